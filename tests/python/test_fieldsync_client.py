"""The fieldsync phone bindings, used from Python as a phone app uses them from Kotlin/Swift.

Run by tests/tests/python_bindings.rs, which starts a real server (demo county), generates
the Python bindings into a temporary folder and sets:

- FIELDSYNC_PY_SERVER_URL: the server's http://127.0.0.1:PORT address
- FIELDSYNC_PY_DATA_DIR: the phone's data folder (kept between the two stages)
- FIELDSYNC_PY_PHOTOS: the repository's testdata/photos folder
- FIELDSYNC_PY_WORK_DIR: a scratch folder for files the tests make

Stage one (`test_before_revocation_*`) runs first; the Rust test then revokes every session
of cadre01 from the console and runs stage two (`test_after_revocation_*`).
"""

import os
import time

import pytest

import fieldsync_client_ffi as fieldsync

SERVER_URL = os.environ["FIELDSYNC_PY_SERVER_URL"]
DATA_DIR = os.environ["FIELDSYNC_PY_DATA_DIR"]
PHOTOS = os.environ["FIELDSYNC_PY_PHOTOS"]
WORK_DIR = os.environ["FIELDSYNC_PY_WORK_DIR"]

CADRE = "cadre01"
PASSWORD = "fieldsync-demo"


class RecordingObserver(fieldsync.SyncProgressObserver):
    """Keeps every progress call in order; optionally cancels the sync mid-photo."""

    def __init__(self, client=None, cancel_mid_photo=False):
        self.events = []
        self.client = client
        self.cancel_mid_photo = cancel_mid_photo
        self.cancel_answered = None

    def on_phase(self, phase):
        self.events.append(("phase", phase))

    def on_items(self, phase, done, total):
        self.events.append(("items", phase, done, total))

    def on_photo_bytes(self, sha256, sent, total):
        self.events.append(("photo", sha256, sent, total))
        if self.cancel_mid_photo and 0 < sent < total and self.cancel_answered is None:
            self.cancel_answered = self.client.cancel_sync()

    def phases(self):
        return [event[1] for event in self.events if event[0] == "phase"]

    def photo_events(self):
        return [event for event in self.events if event[0] == "photo"]


class RecordingChanges(fieldsync.ChangeListener):
    """Keeps what each sync changed, as a screen would use it to refresh."""

    def __init__(self):
        self.changes = []

    def on_changes(self, changes):
        self.changes.append(changes)


def open_client():
    return fieldsync.FieldsyncClient.open(DATA_DIR, SERVER_URL, None)


def millis(seconds):
    return int(seconds * 1000)


def visit_form(household_id, photo_paths):
    now = time.time()
    return fieldsync.VisitForm(
        household_id=household_id,
        mode=fieldsync.VisitModeChoice.IN_PERSON,
        exception_reason=None,
        visit_type=fieldsync.VisitTypeChoice.ROUTINE,
        checkin_at_ms=millis(now - 45 * 60),
        checkout_at_ms=millis(now - 5 * 60),
        observed_situation="户主在家，秋粮已收，家中老人身体尚可。",
        plan_progress="产业帮扶的鸡苗已发放。",
        problems="",
        actions="",
        needs="",
        policies_explained=["医疗保障"],
        wellbeing=fieldsync.WellbeingForm(
            food=fieldsync.CheckOutcome.PASS,
            clothing=fieldsync.CheckOutcome.PASS,
            compulsory_education=fieldsync.CheckOutcome.PASS,
            basic_medical=fieldsync.CheckOutcome.PASS,
            housing_safety=fieldsync.CheckOutcome.FAIL,
            drinking_water=fieldsync.CheckOutcome.NOT_CHECKED,
            note="危房C级",
        ),
        location=None,
        photo_paths=photo_paths,
    )


def test_before_revocation_login_pull_record_sync_cancel_and_refusals():
    client = open_client()
    assert client.session() == fieldsync.SessionStatus.SIGNED_OUT()

    # Not signed in: a sync says so with its code, before any network work.
    with pytest.raises(fieldsync.FieldsyncError.NotSignedIn):
        client.sync(RecordingObserver())

    with pytest.raises(fieldsync.FieldsyncError.WrongCredentials):
        client.login(CADRE, "wrong-password")
    user = client.login(CADRE, PASSWORD)
    assert user.username == CADRE
    assert client.session() == fieldsync.SessionStatus.SIGNED_IN()

    # Pull: the first sync downloads the cadre's households, and says so to the listener.
    changes = RecordingChanges()
    client.set_change_listener(changes)
    first = RecordingObserver()
    report = client.sync(first)
    assert report.households_pulled > 0
    assert changes.changes == [report.changes]
    assert report.changes.everything is True
    assert len(report.changes.household_ids) == report.households_pulled
    assert first.phases() == [
        fieldsync.SyncPhase.PUSH,
        fieldsync.SyncPhase.UPLOAD,
        fieldsync.SyncPhase.PULL,
    ]
    households = client.households()
    assert households
    household = households[0]
    detail = client.household(household.household_id)
    assert detail.household_id == household.household_id
    assert detail.head_name == household.head_name

    # An unknown household is refused with its own code, before anything is saved.
    with pytest.raises(fieldsync.FieldsyncError.UnknownHousehold):
        client.record_visit(visit_form("zzzz", []))

    # A text file is not a photo, and a HEIC photo must be converted first.
    not_an_image = os.path.join(WORK_DIR, "notes.jpg")
    with open(not_an_image, "w", encoding="utf-8") as file:
        file.write("这不是照片 this is not a photo\n")
    with pytest.raises(fieldsync.FieldsyncError.PhotoNotAnImage):
        client.record_visit(visit_form(household.household_id, [not_an_image]))
    heic = os.path.join(WORK_DIR, "camera.heic")
    with open(heic, "wb") as file:
        file.write(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    with pytest.raises(fieldsync.FieldsyncError.PhotoHeicNeedsConversion):
        client.record_visit(visit_form(household.household_id, [heic]))
    assert client.visits() == []

    # A visit with a real camera photo, then a sync whose progress arrives in order.
    photo = os.path.join(PHOTOS, "gps_DSCN0010.jpg")
    photo_size = os.path.getsize(photo)
    visit_id = client.record_visit(visit_form(household.household_id, [photo]))
    visits = client.visits()
    assert [visit.visit_id for visit in visits] == [visit_id]
    assert visits[0].state == fieldsync.VisitProgress.UNSENT
    assert client.status().unsent_mutations >= 2

    observer = RecordingObserver()
    report = client.sync(observer)
    assert report.mutations_applied >= 2
    assert report.uploads_completed == 1
    assert report.bytes_uploaded == photo_size
    assert observer.phases() == [
        fieldsync.SyncPhase.PUSH,
        fieldsync.SyncPhase.UPLOAD,
        fieldsync.SyncPhase.PULL,
    ]
    # Every event belongs to the phase announced last, and counts never go back.
    phase = None
    last_count = {}
    for event in observer.events:
        if event[0] == "phase":
            phase = event[1]
        elif event[0] == "items":
            assert event[1] == phase, observer.events
            assert event[2] >= last_count.get(event[1], 0), observer.events
            last_count[event[1]] = event[2]
        else:
            assert phase == fieldsync.SyncPhase.UPLOAD, observer.events
    photo_events = observer.photo_events()
    sent = [event[2] for event in photo_events]
    assert sent == sorted(sent) and sent[0] == 0 and sent[-1] == photo_size, photo_events
    assert all(event[3] == photo_size for event in photo_events)
    push_items = [e for e in observer.events if e[0] == "items" and e[1] == fieldsync.SyncPhase.PUSH]
    assert push_items[-1][2] == push_items[-1][3] >= 2, push_items
    assert client.visits()[0].state == fieldsync.VisitProgress.SUBMITTED
    assert visit_id in report.changes.visit_ids
    assert report.changes.everything is False
    assert changes.changes[-1] == report.changes
    assert client.status().unsent_mutations == 0

    # Cancel in the middle of a photo upload (a 4-chunk photo), then resume.
    big_photo = os.path.join(PHOTOS, "mobile_jolla.jpg")
    big_size = os.path.getsize(big_photo)
    client.record_visit(visit_form(household.household_id, [big_photo]))
    cancelling = RecordingObserver(client, cancel_mid_photo=True)
    with pytest.raises(fieldsync.FieldsyncError.Cancelled):
        client.sync(cancelling)
    assert cancelling.cancel_answered is True
    sent_before_cancel = [e[2] for e in cancelling.photo_events()]
    assert 0 < sent_before_cancel[-1] < big_size, sent_before_cancel
    status = client.status()
    assert status.pending_uploads == 1
    assert status.last_error is None, "a cancel is not a failure"
    assert client.cancel_sync() is False, "no sync is running now"

    resumed = RecordingObserver()
    report = client.sync(resumed)
    assert report.uploads_completed == 1
    assert report.bytes_uploaded == big_size - sent_before_cancel[-1]
    resumed_sent = [e[2] for e in resumed.photo_events()]
    assert resumed_sent[0] == sent_before_cancel[-1] and resumed_sent[-1] == big_size
    assert client.status().pending_uploads == 0

    # 季度收入登记 on the phone: the formula's amounts, a second registration of the same
    # quarter refused with its code and fields, and a deliberate correction (更正). (A far
    # year no demo registration has; it stays in the outbox, nothing here syncs it.)
    income = fieldsync.IncomeForm(
        household_id=household.household_id,
        year=2099,
        quarter=1,
        wage_fen=300_000,
        business_gross_fen=150_000,
        property_fen=0,
        transfer_fen=50_000,
        business_cost_fen=40_000,
    )
    registered = client.register_income(income)
    assert registered.net_fen == 300_000 + 150_000 + 50_000 - 40_000
    with pytest.raises(fieldsync.FieldsyncError.QuarterAlreadyRegistered) as again:
        client.register_income(income)
    assert (again.value.year, again.value.quarter, again.value.on_this_phone) == (2099, 1, True)
    assert again.value.net_fen == registered.net_fen
    income.wage_fen = 310_000
    corrected = client.correct_income(income)
    assert corrected.net_fen == registered.net_fen + 10_000


def test_after_revocation_sync_says_signed_out_by_server():
    client = open_client()
    assert client.session() == fieldsync.SessionStatus.SIGNED_IN()
    with pytest.raises(fieldsync.FieldsyncError.SignedOutByServer) as refused:
        client.sync(RecordingObserver())
    assert refused.value.reason == "session_revoked"
    assert client.session() == fieldsync.SessionStatus.SIGNED_OUT_BY_SERVER(
        reason="session_revoked"
    )
    assert client.status().pending_uploads == 0

