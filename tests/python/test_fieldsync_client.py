"""The fieldsync phone bindings, used from Python as a phone app uses them from Kotlin/Swift.

Run by tests/tests/python_bindings.rs, which starts a real server (demo county), generates
the Python bindings into a temporary folder and sets:

- FIELDSYNC_PY_SERVER_URL: the server's http://127.0.0.1:PORT address
- FIELDSYNC_PY_DATA_DIR: the phone's data folder (kept between the two stages)
- FIELDSYNC_PY_PHOTOS: the repository's testdata/photos folder
- FIELDSYNC_PY_WORK_DIR: a scratch folder for files the tests make

The stages run in this order, with the supervisor's decisions made by the Rust test in
between: `test_before_return_*` (the visit id is left in visit_id.txt), the supervisor
returns the visit, `test_after_return_*` (fix and resync), the supervisor approves revision
2, `test_after_approval_*`, the Rust test revokes cadre01's sessions from the console,
`test_after_revocation_*`.
"""

import http.client
import os
import shutil
import time
import urllib.parse

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


class ThrowingObserver(fieldsync.SyncProgressObserver):
    """An app bug: every progress call raises. The sync must carry on regardless."""

    def __init__(self):
        self.calls = 0

    def on_phase(self, phase):
        self.calls += 1
        raise ValueError("bug in the app's progress screen")

    def on_items(self, phase, done, total):
        self.calls += 1
        raise ValueError("bug in the app's progress screen")

    def on_photo_bytes(self, sha256, sent, total):
        self.calls += 1
        raise ValueError("bug in the app's progress screen")


class ThrowingChanges(fieldsync.ChangeListener):
    def __init__(self):
        self.calls = 0

    def on_changes(self, changes):
        self.calls += 1
        raise RuntimeError("bug in the app's list screen")


VISIT_ID_FILE = os.path.join(WORK_DIR, "visit_id.txt")


def camera_file(name):
    """A camera temp file, as the app's camera screen leaves one (the app deletes it later)."""
    path = os.path.join(WORK_DIR, "camera-" + name)
    shutil.copyfile(os.path.join(PHOTOS, name), path)
    return path


def patch(upload, body):
    """Send one tus PATCH the way an OS background uploader does: plain HTTP, the headers
    the core listed, the file's bytes as the body."""
    url = urllib.parse.urlsplit(upload.upload_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {header.name: header.value for header in upload.headers}
    connection.request(upload.method, url.path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status, response.getheader("Upload-Offset")


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
        proposed_changes=[
            fieldsync.ProposedChangeForm(
                target="household",
                field="phone",
                old_value="",
                new_value="13900000001",
                reason="户主换了手机号",
            )
        ],
        location=fieldsync.LocationFix(
            latitude=26.58,
            longitude=106.71,
            coordinate_system=fieldsync.CoordinateSystem.WGS84,
            accuracy_m=12.0,
            is_mock=False,
            fix_time_ms=millis(now - 40 * 60),
        ),
        photo_paths=photo_paths,
    )


def test_before_return_login_pull_refusals_record_sync_cancel_background_upload():
    client = open_client()
    assert client.session() == fieldsync.SessionStatus.SIGNED_OUT()

    # Not signed in: a sync says so with its code, before any network work.
    with pytest.raises(fieldsync.FieldsyncError.NotSignedIn):
        client.sync(RecordingObserver())
    # Before the first sync a household id cannot be checked, and the code says why.
    with pytest.raises(fieldsync.FieldsyncError.HouseholdsNotSynced) as not_synced:
        client.record_visit(visit_form("hh-typo", []))
    assert not_synced.value.household_id == "hh-typo"

    with pytest.raises(fieldsync.FieldsyncError.WrongCredentials):
        client.login(CADRE, "wrong-password")
    # The phone's model goes with the login, so the console can name this device.
    client.set_device_model("Redmi Note 12")
    user = client.login(CADRE, PASSWORD)
    assert user.username == CADRE
    assert client.session() == fieldsync.SessionStatus.SIGNED_IN()

    # Pull: the first sync downloads the cadre's households, and says so to the listener.
    changes = RecordingChanges()
    client.set_change_listener(changes)
    first = RecordingObserver()
    report = client.sync(first)
    # Nothing of this cadre waits in a conflict: the lists are there, and empty.
    assert report.conflicts_recorded == 0
    assert report.pending_conflicts == []
    assert client.status().pending_conflicts == []
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

    # Everything wrong is refused with its own code, before anything is saved.
    with pytest.raises(fieldsync.FieldsyncError.UnknownHousehold) as unknown:
        client.record_visit(visit_form("zzzz", []))
    assert unknown.value.household_id == "zzzz"
    far_off = visit_form(household.household_id, [])
    far_off.location.latitude = 91.0
    with pytest.raises(fieldsync.FieldsyncError.ImpossibleLocation) as impossible:
        client.record_visit(far_off)
    assert impossible.value.latitude == 91.0
    not_a_number = visit_form(household.household_id, [])
    not_a_number.location.longitude = float("nan")
    with pytest.raises(fieldsync.FieldsyncError.ImpossibleLocation):
        client.record_visit(not_a_number)
    negative = visit_form(household.household_id, [])
    negative.location.accuracy_m = -5.0
    with pytest.raises(fieldsync.FieldsyncError.InvalidAccuracy) as accuracy:
        client.record_visit(negative)
    assert accuracy.value.accuracy_m == -5.0
    too_long = visit_form(household.household_id, [])
    too_long.checkin_at_ms = too_long.checkout_at_ms - millis(25 * 3600)
    with pytest.raises(fieldsync.FieldsyncError.VisitTooLong) as long_visit:
        client.record_visit(too_long)
    assert long_visit.value.duration_minutes == 25 * 60
    assert long_visit.value.max_minutes == 24 * 60

    # A text file is not a photo, and a HEIC photo must be converted first.
    not_an_image = os.path.join(WORK_DIR, "notes.jpg")
    with open(not_an_image, "w", encoding="utf-8") as file:
        file.write("这不是照片 this is not a photo\n")
    with pytest.raises(fieldsync.FieldsyncError.PhotoNotAnImage) as refused_photo:
        client.record_visit(visit_form(household.household_id, [not_an_image]))
    assert refused_photo.value.path == not_an_image
    heic = os.path.join(WORK_DIR, "camera.heic")
    with open(heic, "wb") as file:
        file.write(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    with pytest.raises(fieldsync.FieldsyncError.PhotoHeicNeedsConversion):
        client.record_visit(visit_form(household.household_id, [heic]))
    assert client.visits() == []
    assert client.status().unsent_mutations == 0

    # A visit with a real camera photo, then a sync whose progress arrives in order.
    photo = camera_file("gps_DSCN0010.jpg")
    photo_size = os.path.getsize(photo)
    visit_id = client.record_visit(visit_form(household.household_id, [photo]))
    # The core keeps its own copy: the app deletes its camera file at once.
    os.remove(photo)
    recorded = client.visit(visit_id)
    assert recorded.state == fieldsync.VisitProgress.UNSENT
    assert recorded.form.wellbeing.housing_safety == fieldsync.CheckOutcome.FAIL
    assert recorded.form.wellbeing.drinking_water == fieldsync.CheckOutcome.NOT_CHECKED
    assert recorded.form.wellbeing.note == "危房C级"
    assert recorded.form.policies_explained == ["医疗保障"]
    assert recorded.form.plan_progress == "产业帮扶的鸡苗已发放。"
    assert recorded.form.proposed_changes[0].new_value == "13900000001"
    assert recorded.form.location.accuracy_m == 12.0
    assert [p.size_bytes for p in recorded.photos] == [photo_size]
    assert os.path.isfile(recorded.photos[0].local_path)
    assert recorded.photos[0].uploaded is False
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
    assert client.visit(visit_id).photos[0].uploaded is True
    with open(VISIT_ID_FILE, "w", encoding="utf-8") as file:
        file.write(visit_id)

    # An app bug: an observer and a change listener that throw. The sync is unaffected.
    throwing = ThrowingObserver()
    client.set_change_listener(ThrowingChanges())
    report = client.sync(throwing)
    assert throwing.calls == 1, "muted after its first failure"
    assert report.households_pulled >= 0
    client.set_change_listener(changes)

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

    # The OS background uploader: the core lists the upload (pushing the visit first), the
    # "OS" sends part of the file and is cut off, the core lists the rest from the server's
    # offset, the "OS" sends it, and the app reports completion.
    background_photo = camera_file("gps_DSCN0012.jpg")
    with open(background_photo, "rb") as file:
        background_bytes = file.read()
    client.record_visit(visit_form(household.household_id, [background_photo]))
    pending = client.pending_uploads()
    assert pending.waiting_for_push == 0
    assert client.status().unsent_mutations == 0, "listing pushed the visit first"
    assert len(pending.uploads) == 1
    upload = pending.uploads[0]
    assert upload.method == "PATCH"
    assert upload.upload_url.startswith(SERVER_URL + "/tus/uploads/")
    assert (upload.offset, upload.size_bytes) == (0, len(background_bytes))
    headers = {header.name: header.value for header in upload.headers}
    assert headers["Tus-Resumable"] == "1.0.0"
    assert headers["Authorization"].startswith("Bearer ")
    assert headers["Upload-Offset"] == "0"
    assert "sha256 " in headers["Upload-Metadata"]
    with open(upload.file_path, "rb") as file:
        assert file.read() == background_bytes
    cut = 50_000
    status, offset = patch(upload, background_bytes[:cut])
    assert (status, offset) == (204, str(cut))
    assert client.upload_finished(upload.sha256) is False, "the server lacks bytes"
    rest = client.pending_uploads().uploads
    assert [(u.sha256, u.offset) for u in rest] == [(upload.sha256, cut)]
    with open(rest[0].file_path, "rb") as file:
        assert file.read() == background_bytes[cut:]
    status, offset = patch(rest[0], background_bytes[cut:])
    assert (status, offset) == (204, str(len(background_bytes)))
    assert client.upload_finished(upload.sha256) is True
    assert client.status().pending_uploads == 0
    assert client.pending_uploads().uploads == []
    report = client.sync(RecordingObserver())
    assert report.uploads_completed == 0 and report.bytes_uploaded == 0

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


def test_after_return_the_task_appears_and_is_fixed_with_a_new_photo():
    client = open_client()
    with open(VISIT_ID_FILE, encoding="utf-8") as file:
        visit_id = file.read().strip()
    changes = RecordingChanges()
    client.set_change_listener(changes)
    report = client.sync(RecordingObserver())
    assert visit_id in report.changes.task_visit_ids
    assert changes.changes[-1] == report.changes
    tasks = client.tasks()
    assert [task.visit_id for task in tasks] == [visit_id]
    task = tasks[0]
    assert sorted((r.code, r.field) for r in task.reasons) == [
        ("content_too_short", "observed_situation"),
        ("photo_unclear", "photo_ids"),
    ]
    assert {r.field_label_zh for r in task.reasons} == {"走访照片", "生产生活情况"}
    assert task.note == "请重拍户主合影，补充收入情况"

    returned = client.visit(visit_id)
    assert returned.state == fieldsync.VisitProgress.RETURNED
    assert returned.task == task
    old_photo = returned.photos[0]

    # 整改: change the field the reason names and retake the photo, from the form as it was.
    form = returned.form
    form.observed_situation += "本季度务工收入增加约3000元。"
    form.photo_paths = [camera_file("Canon_40D.jpg")]
    assert client.fix_visit(visit_id, form, []) == 2
    fixed = client.visit(visit_id)
    assert (fixed.revision, fixed.state) == (2, fieldsync.VisitProgress.UNSENT)
    assert len(fixed.photos) == 1 and fixed.photos[0].photo_id != old_photo.photo_id
    assert fixed.form.wellbeing == returned.form.wellbeing
    assert client.tasks() == []

    # A photo id that is not the visit's is refused; so is a fix that invents one.
    with pytest.raises(fieldsync.FieldsyncError.NotFound):
        client.remove_photo(visit_id, old_photo.photo_id)
    invented = client.visit(visit_id).form
    with pytest.raises(fieldsync.FieldsyncError.Invalid) as invalid:
        client.fix_visit(visit_id, invented, [old_photo.photo_id])
    assert invalid.value.field == "photo_ids"

    observer = RecordingObserver()
    report = client.sync(observer)
    assert report.uploads_completed == 1
    assert observer.phases() == [
        fieldsync.SyncPhase.PUSH,
        fieldsync.SyncPhase.UPLOAD,
        fieldsync.SyncPhase.PULL,
    ]
    assert client.visit(visit_id).state == fieldsync.VisitProgress.SUBMITTED
    assert client.status().pending_uploads == 0

    # A draft can drop a photo before it is ever sent: a new revision without it.
    household_id = client.visit(visit_id).household_id
    draft_id = client.record_visit(
        visit_form(
            household_id,
            [camera_file("gps_DSCN0021.jpg"), camera_file("orientation_landscape_6.jpg")],
        )
    )
    draft = client.visit(draft_id)
    assert client.remove_photo(draft_id, draft.photos[1].photo_id) == 2
    assert [p.photo_id for p in client.visit(draft_id).photos] == [draft.photos[0].photo_id]
    replacement = camera_file("orientation_portrait_8.jpg")
    assert client.replace_photo(draft_id, draft.photos[0].photo_id, replacement) == 3
    assert client.visit(draft_id).photos[0].photo_id != draft.photos[0].photo_id
    with pytest.raises(fieldsync.FieldsyncError.PhotoNotAnImage):
        client.replace_photo(
            draft_id,
            client.visit(draft_id).photos[0].photo_id,
            os.path.join(WORK_DIR, "notes.jpg"),
        )
    client.sync(RecordingObserver())
    assert client.visit(draft_id).state == fieldsync.VisitProgress.SUBMITTED


def test_after_approval_the_phone_shows_the_fixed_visit_approved():
    client = open_client()
    with open(VISIT_ID_FILE, encoding="utf-8") as file:
        visit_id = file.read().strip()
    report = client.sync(RecordingObserver())
    assert visit_id in report.changes.visit_ids
    approved = client.visit(visit_id)
    assert (approved.revision, approved.state) == (2, fieldsync.VisitProgress.APPROVED)
    assert approved.task is None
    assert client.tasks() == []


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
