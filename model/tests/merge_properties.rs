//! Property tests for the field-register merge rules and the hybrid logical clock (issue 3).
//!
//! The merge tests play a small world: 2–4 phones edit 1–3 registers of one household, push
//! their outbox and pull from a model server at random points. A pull gives a phone the
//! server's whole state at that moment (a prefix of the server's history, which is what a
//! checkpointed pull applies), so the phone's causal view of other devices' writes is a set
//! of delivered writes, plus its own earlier edits. The same writes are then delivered to
//! fresh model servers in other orders that are consistent with those views, with duplicate
//! deliveries mixed in, and the outcomes are compared with each other and with a ground
//! truth computed from the views alone.
//!
//! The model server uses only the public pure functions `merge`, `current` and
//! `apply_value`. It dedupes by stamp (stamps are unique: each phone's HLC strictly
//! increases and the device id breaks ties), gives each applied write the next global
//! `server_seq`, and quotes as `base_seq` what a pull would have told the phone: the largest
//! `server_seq` of that register among the writes the phone had pulled.
//!
//! Runs use a fixed ChaCha seed, so CI is deterministic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use fieldsync_model::codes::{
    Disability, Health, HouseholdAttribute, LabourCapacity, PovertyCause, Relation, Schooling, Sex,
};
use fieldsync_model::hlc::{self, Hlc, IncomingHlc};
use fieldsync_model::household::{Household, Member};
use fieldsync_model::register::{
    ConflictPair, FieldTarget, RegisterWrite, Stamp, apply_value, current, merge,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, RngSeed, TestRunner};
use serde_json::{Value, json};

/// The fixed seed every property runs from ("fieldsyn" in ASCII).
const SEED: u64 = 0x6669_656c_6473_796e;
const CASES: u32 = 256;
const HOUSEHOLD: &str = "hh-1";
const MEMBER: &str = "m-1";
/// Largest millisecond value an HLC holds (48 bits).
const MAX_MILLIS: u64 = (1 << 48) - 1;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- the world ------------------------------------------------------------------------------

/// The registers phones edit: two household fields and the member tombstone.
fn register(index: usize) -> (FieldTarget, &'static str) {
    match index {
        0 => (FieldTarget::Household, "head_name"),
        1 => (FieldTarget::Household, "phone"),
        _ => (FieldTarget::Member(MEMBER.to_owned()), "removed"),
    }
}

/// Values come from a small set per register, so equal values are common.
fn value(register: usize, choice: usize) -> Value {
    match register {
        0 => json!(["王芳", "李强", "张伟"][choice % 3]),
        1 => json!(["13800000001", "13900000002", ""][choice % 3]),
        _ => json!(choice % 2 == 1),
    }
}

fn device_id(device: usize) -> String {
    format!("phone-{}", (b'a' + device as u8) as char)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Edit,
    Push,
    Pull,
}

#[derive(Debug, Clone)]
struct EditPlan {
    register: usize,
    choice: usize,
    /// How far the phone's wall clock moves before the edit; negative is a backwards jump.
    wall_step: i64,
}

#[derive(Debug, Clone)]
struct Plan {
    /// Per device, the edits it makes in order.
    edits: Vec<Vec<EditPlan>>,
    /// Interleaving of phone actions; every remaining edit is made and pushed afterwards.
    schedule: Vec<(usize, Action)>,
    /// Start of each phone's wall clock (small, so HLCs tie across devices).
    wall_starts: Vec<u64>,
    /// Seeds for the alternative delivery orders and duplicates.
    seeds: [u64; 4],
}

fn plan() -> impl Strategy<Value = Plan> {
    (2usize..=4, 1usize..=3).prop_flat_map(|(devices, registers)| {
        let edit =
            (0..registers, 0usize..3, -3i64..=4).prop_map(|(register, choice, wall_step)| {
                EditPlan {
                    register,
                    choice,
                    wall_step,
                }
            });
        let action = prop_oneof![Just(Action::Edit), Just(Action::Push), Just(Action::Pull)];
        (
            prop::collection::vec(prop::collection::vec(edit, 1..=6), devices),
            prop::collection::vec((0..devices, action), 0..40),
            prop::collection::vec(1_000u64..1_004, devices),
            any::<[u64; 4]>(),
        )
            .prop_map(|(edits, schedule, wall_starts, seeds)| Plan {
                edits,
                schedule,
                wall_starts,
                seeds,
            })
    })
}

/// One edit as a phone made it.
#[derive(Debug, Clone)]
struct Write {
    device: usize,
    register: usize,
    value: Value,
    stamp: Stamp,
    /// The phone's earlier edits (known locally whether or not they reached the server).
    own_earlier: BTreeSet<usize>,
    /// The last pull before the edit, as an index into [`Scenario::snapshots`].
    snapshot: Option<usize>,
}

/// What happened: the writes, what each pull saw, and one delivery order.
#[derive(Debug, Default)]
struct Scenario {
    writes: Vec<Write>,
    /// Each pull's view of the server: the writes delivered when it ran.
    snapshots: Vec<BTreeSet<usize>>,
    /// Each pull's view as a prefix length of `delivered`.
    snapshot_lens: Vec<usize>,
    /// The order the writes first reached the server.
    delivered: Vec<usize>,
}

impl Scenario {
    /// Was `earlier` in the causal view of `later` when `later` was made?
    fn saw(&self, later: usize, earlier: usize) -> bool {
        let write = &self.writes[later];
        write.own_earlier.contains(&earlier)
            || write
                .snapshot
                .is_some_and(|snapshot| self.snapshots[snapshot].contains(&earlier))
    }

    fn concurrent(&self, a: usize, b: usize) -> bool {
        !self.saw(a, b) && !self.saw(b, a)
    }

    fn by_stamp(&self, stamp: &Stamp) -> usize {
        self.writes
            .iter()
            .position(|write| &write.stamp == stamp)
            .expect("a stamp the scenario made")
    }
}

/// Run the plan once: phones edit (ticking their HLC), push one outbox entry at a time in
/// seq order, and pull (observing the server's HLC).
fn play(plan: &Plan) -> Scenario {
    let devices = plan.edits.len();
    let mut hlcs = vec![Hlc::ZERO; devices];
    let mut walls: Vec<i64> = plan.wall_starts.iter().map(|&start| start as i64).collect();
    let mut next_edit = vec![0; devices];
    let mut outbox: Vec<VecDeque<usize>> = vec![VecDeque::new(); devices];
    let mut last_pull: Vec<Option<usize>> = vec![None; devices];
    let mut own: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); devices];
    let mut scenario = Scenario::default();

    let mut events = plan.schedule.clone();
    for (device, edits) in plan.edits.iter().enumerate() {
        events.extend(std::iter::repeat_n((device, Action::Edit), edits.len()));
    }
    for (device, edits) in plan.edits.iter().enumerate() {
        events.extend(std::iter::repeat_n((device, Action::Push), edits.len()));
    }

    for (device, action) in events {
        match action {
            Action::Edit => {
                let Some(edit) = plan.edits[device].get(next_edit[device]) else {
                    continue;
                };
                next_edit[device] += 1;
                walls[device] = (walls[device] + edit.wall_step).max(0);
                hlcs[device] = hlcs[device].tick(walls[device] as u64);
                let id = scenario.writes.len();
                scenario.writes.push(Write {
                    device,
                    register: edit.register,
                    value: value(edit.register, edit.choice),
                    stamp: Stamp {
                        hlc: hlcs[device],
                        device_id: device_id(device),
                    },
                    own_earlier: own[device].clone(),
                    snapshot: last_pull[device],
                });
                own[device].insert(id);
                outbox[device].push_back(id);
            }
            Action::Push => {
                if let Some(id) = outbox[device].pop_front() {
                    scenario.delivered.push(id);
                }
            }
            Action::Pull => {
                let server_hlc = scenario
                    .delivered
                    .iter()
                    .map(|&id| scenario.writes[id].stamp.hlc)
                    .max()
                    .unwrap_or(Hlc::ZERO);
                hlcs[device] = hlcs[device].observe(server_hlc, walls[device] as u64);
                last_pull[device] = Some(scenario.snapshots.len());
                scenario.snapshot_lens.push(scenario.delivered.len());
                scenario
                    .snapshots
                    .push(scenario.delivered.iter().copied().collect());
            }
        }
    }
    assert_eq!(scenario.delivered.len(), scenario.writes.len());
    scenario
}

/// A small deterministic generator for delivery orders (splitmix64).
#[derive(Debug)]
struct Shuffler(u64);

impl Shuffler {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Another delivery order consistent with every view: a write that some pull saw reaches
/// the server before every write that pull did not see; between those cuts the order is
/// free except that each phone pushes its outbox in seq order. With `duplicates`, already
/// delivered writes are delivered again at random points (lost responses, retried batches).
fn delivery_order(scenario: &Scenario, shuffler: &mut Shuffler, duplicates: bool) -> Vec<usize> {
    let mut cuts: BTreeSet<usize> = scenario
        .writes
        .iter()
        .filter_map(|write| write.snapshot)
        .map(|snapshot| scenario.snapshot_lens[snapshot])
        .collect();
    cuts.insert(0);
    cuts.insert(scenario.delivered.len());
    let cuts: Vec<usize> = cuts.into_iter().collect();

    let mut order = Vec::new();
    let mut first_deliveries = Vec::new();
    for window in cuts.windows(2) {
        let mut queues: BTreeMap<usize, VecDeque<usize>> = BTreeMap::new();
        for &id in &scenario.delivered[window[0]..window[1]] {
            queues
                .entry(scenario.writes[id].device)
                .or_default()
                .push_back(id);
        }
        while !queues.is_empty() {
            let device = *queues
                .keys()
                .nth(shuffler.below(queues.len()))
                .expect("a non-empty queue");
            let queue = queues.get_mut(&device).expect("the chosen queue");
            let id = queue.pop_front().expect("queues are never left empty");
            if queue.is_empty() {
                queues.remove(&device);
            }
            order.push(id);
            first_deliveries.push(id);
            while duplicates && shuffler.below(3) == 0 {
                order.push(first_deliveries[shuffler.below(first_deliveries.len())]);
            }
        }
    }
    order
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Applied,
    Duplicate,
}

/// A register store the way the server keeps one household's registers.
#[derive(Debug, Clone, Default, PartialEq)]
struct Server {
    seq: i64,
    histories: BTreeMap<usize, Vec<RegisterWrite>>,
    /// The value shown per register, maintained from `incoming_wins` alone.
    shown: BTreeMap<usize, Value>,
    /// Conflict records, stored once per key.
    conflicts: BTreeMap<String, ConflictPair>,
    /// How many conflict pairs `merge` reported in total.
    reported: usize,
    /// Stamps already applied, with their server sequence.
    applied: BTreeMap<Stamp, i64>,
}

impl Server {
    fn deliver(&mut self, scenario: &Scenario, id: usize) -> Delivery {
        let write = &scenario.writes[id];
        if self.applied.contains_key(&write.stamp) {
            return Delivery::Duplicate;
        }
        // What the phone's last pull said about this register (Household.field_seqs).
        let base_seq = write.snapshot.map_or(0, |snapshot| {
            scenario.snapshots[snapshot]
                .iter()
                .filter(|&&seen| scenario.writes[seen].register == write.register)
                .map(|&seen| {
                    *self
                        .applied
                        .get(&scenario.writes[seen].stamp)
                        .expect("causal delivery: a pulled write is on the server")
                })
                .max()
                .unwrap_or(0)
        });
        self.seq += 1;
        let incoming = RegisterWrite {
            value: write.value.clone(),
            stamp: write.stamp.clone(),
            author_user_id: format!("user-{}", write.stamp.device_id),
            base_seq,
            server_seq: self.seq,
        };
        let (target, field) = register(write.register);
        let history = self.histories.entry(write.register).or_default();
        let outcome = merge(HOUSEHOLD, &target, field, history, &incoming);
        if outcome.incoming_wins {
            self.shown.insert(write.register, incoming.value.clone());
        }
        self.reported += outcome.conflicts.len();
        for conflict in outcome.conflicts {
            self.conflicts.insert(conflict.key(), conflict);
        }
        history.push(incoming);
        self.applied.insert(write.stamp.clone(), self.seq);
        Delivery::Applied
    }

    /// The value per register by `current`.
    fn values(&self) -> BTreeMap<usize, Value> {
        self.histories
            .iter()
            .map(|(&register, history)| {
                let shown = current(history).expect("a register with a write");
                (register, shown.value.clone())
            })
            .collect()
    }

    /// What a supervisor sees per conflict: both values with their stamps.
    fn conflict_view(&self) -> BTreeMap<String, (Stamp, Value, Stamp, Value)> {
        self.conflicts
            .iter()
            .map(|(key, pair)| {
                (
                    key.clone(),
                    (
                        pair.first.stamp.clone(),
                        pair.first.value.clone(),
                        pair.second.stamp.clone(),
                        pair.second.value.clone(),
                    ),
                )
            })
            .collect()
    }
}

fn deliver_all(scenario: &Scenario, order: &[usize]) -> (Server, usize) {
    let mut server = Server::default();
    let mut duplicates = 0;
    for &id in order {
        if server.deliver(scenario, id) == Delivery::Duplicate {
            duplicates += 1;
        }
    }
    (server, duplicates)
}

/// The conflict key of two writes, as `ConflictPair::key` spells it.
fn pair_key(scenario: &Scenario, a: usize, b: usize) -> String {
    let as_register_write = |id: usize| {
        let write: &Write = &scenario.writes[id];
        RegisterWrite {
            value: write.value.clone(),
            stamp: write.stamp.clone(),
            author_user_id: String::new(),
            base_seq: 0,
            server_seq: 0,
        }
    };
    let (first, second) = if scenario.writes[a].stamp < scenario.writes[b].stamp {
        (a, b)
    } else {
        (b, a)
    };
    let (target, field) = register(scenario.writes[a].register);
    ConflictPair {
        household_id: HOUSEHOLD.to_owned(),
        target,
        field: field.to_owned(),
        first: as_register_write(first),
        second: as_register_write(second),
    }
    .key()
}

/// Ground truth from causality alone: every pair of writes to one register from different
/// devices, with different values, neither in the other's view.
fn true_conflicts(scenario: &Scenario) -> BTreeSet<String> {
    let writes = &scenario.writes;
    let mut keys = BTreeSet::new();
    for a in 0..writes.len() {
        for b in a + 1..writes.len() {
            if writes[a].register == writes[b].register
                && writes[a].device != writes[b].device
                && writes[a].value != writes[b].value
                && scenario.concurrent(a, b)
            {
                keys.insert(pair_key(scenario, a, b));
            }
        }
    }
    keys
}

/// LWW truth: per register, the value of the write with the greatest stamp.
fn lww_truth(scenario: &Scenario) -> BTreeMap<usize, Value> {
    let mut best: BTreeMap<usize, &Write> = BTreeMap::new();
    for write in &scenario.writes {
        let entry = best.entry(write.register).or_insert(write);
        if write.stamp > entry.stamp {
            *entry = write;
        }
    }
    best.into_iter()
        .map(|(register, write)| (register, write.value.clone()))
        .collect()
}

/// A phone that receives every write in an arbitrary order and keeps the greatest stamp.
fn phone_lww(scenario: &Scenario, shuffler: &mut Shuffler) -> BTreeMap<usize, Value> {
    let mut order: Vec<usize> = (0..scenario.writes.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, shuffler.below(i + 1));
    }
    let mut replica: BTreeMap<usize, (Stamp, Value)> = BTreeMap::new();
    for id in order {
        let write = &scenario.writes[id];
        let newer = replica
            .get(&write.register)
            .is_none_or(|(stamp, _)| write.stamp > *stamp);
        if newer {
            replica.insert(write.register, (write.stamp.clone(), write.value.clone()));
        }
    }
    replica
        .into_iter()
        .map(|(register, (_, value))| (register, value))
        .collect()
}

fn base_card() -> Household {
    Household {
        household_id: HOUSEHOLD.to_owned(),
        national_household_number: "5224250100010001".to_owned(),
        head_name: "刘明".to_owned(),
        township_id: "t1".to_owned(),
        village_id: "v1".to_owned(),
        village_name: "石板村".to_owned(),
        address: "石板村三组".to_owned(),
        phone: String::new(),
        attribute: HouseholdAttribute::General,
        main_cause: PovertyCause::Illness,
        secondary_causes: vec![],
        housing_danger_level: None,
        location: None,
        members: vec![Member {
            member_id: MEMBER.to_owned(),
            name: "刘明".to_owned(),
            relation: Relation::Head,
            sex: Sex::Male,
            birth_date: "1968-03-01".to_owned(),
            id_number: String::new(),
            health: Health::Healthy,
            labour_capacity: LabourCapacity::Ordinary,
            schooling: Schooling::NotInSchool,
            disability: Disability::None,
            disability_grade: 0,
            has_medical_insurance: true,
            has_serious_illness_insurance: true,
            has_pension_insurance: false,
            removed: false,
        }],
        measures: vec![],
        server_seq: 1,
        field_seqs: BTreeMap::new(),
    }
}

/// The household card with each register's winning value applied.
fn card(values: &BTreeMap<usize, Value>) -> Household {
    let mut card = base_card();
    for (&index, value) in values {
        let (target, field) = register(index);
        apply_value(&mut card, &target, field, value).expect("generated values are valid");
    }
    card
}

/// Check one delivery run against the scenario's ground truth.
fn check_run(
    scenario: &Scenario,
    server: &Server,
    duplicates: usize,
    order_len: usize,
    truth: &BTreeSet<String>,
) -> Result<(), TestCaseError> {
    // Every write is applied exactly once; every re-delivery is a duplicate.
    prop_assert_eq!(server.applied.len(), scenario.writes.len());
    prop_assert_eq!(order_len - duplicates, scenario.writes.len());
    prop_assert_eq!(server.seq as usize, scenario.writes.len());
    // Convergence: the value shown is the greatest stamp, and `incoming_wins` agrees.
    prop_assert_eq!(&server.values(), &lww_truth(scenario));
    prop_assert_eq!(&server.shown, &server.values());
    // Each concurrent pair is reported exactly once, whichever write arrived second.
    prop_assert_eq!(server.reported, server.conflicts.len());
    // Conflict records equal the causal ground truth.
    let keys: BTreeSet<String> = server.conflicts.keys().cloned().collect();
    prop_assert_eq!(&keys, truth);
    for pair in server.conflicts.values() {
        let first = scenario.by_stamp(&pair.first.stamp);
        let second = scenario.by_stamp(&pair.second.stamp);
        prop_assert!(pair.first.stamp < pair.second.stamp, "pair in stamp order");
        prop_assert_eq!(&pair.winner().stamp, &pair.second.stamp);
        prop_assert_eq!(&pair.first.value, &scenario.writes[first].value);
        prop_assert_eq!(&pair.second.value, &scenario.writes[second].value);
        // Never for the same device, equal values, or causally ordered writes.
        prop_assert_ne!(
            scenario.writes[first].device,
            scenario.writes[second].device
        );
        prop_assert_ne!(&pair.first.value, &pair.second.value);
        prop_assert!(scenario.concurrent(first, second), "causally ordered pair");
        prop_assert_eq!(pair.household_id.as_str(), HOUSEHOLD);
        let (target, field) = register(scenario.writes[first].register);
        prop_assert_eq!(&pair.target, &target);
        prop_assert_eq!(pair.field.as_str(), field);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn registers_converge_and_record_exactly_the_concurrent_conflicts(plan in plan()) {
        let scenario = play(&plan);
        let truth = true_conflicts(&scenario);

        // An edit made after seeing a write (pulled or its own) carries a greater stamp, so
        // the newer intention wins by LWW.
        for (later, write) in scenario.writes.iter().enumerate() {
            for (earlier, seen) in scenario.writes.iter().enumerate() {
                if scenario.saw(later, earlier) {
                    prop_assert!(write.stamp > seen.stamp, "causal order implies stamp order");
                }
            }
        }

        let mut orders = vec![scenario.delivered.clone()];
        let mut shuffler = Shuffler(plan.seeds[0]);
        orders.push(delivery_order(&scenario, &mut shuffler, true));
        orders.push(delivery_order(&scenario, &mut Shuffler(plan.seeds[1]), true));
        orders.push(delivery_order(&scenario, &mut Shuffler(plan.seeds[2]), false));

        let mut runs = Vec::new();
        for order in &orders {
            let (server, duplicates) = deliver_all(&scenario, order);
            check_run(&scenario, &server, duplicates, order.len(), &truth)?;

            // Idempotence: delivering everything again, in any order, changes nothing.
            let mut again = server.clone();
            for id in delivery_order(&scenario, &mut shuffler, true) {
                prop_assert_eq!(again.deliver(&scenario, id), Delivery::Duplicate);
            }
            prop_assert_eq!(&again, &server);
            runs.push(server);
        }

        // Convergence across delivery orders, and with a phone applying LWW in any order.
        let phone = phone_lww(&scenario, &mut Shuffler(plan.seeds[3]));
        let phone_card = card(&phone);
        for run in &runs {
            prop_assert_eq!(&run.values(), &phone);
            prop_assert_eq!(&card(&run.values()), &phone_card);
            // Deterministic conflict records: same keys, same values and stamps.
            prop_assert_eq!(run.conflict_view(), runs[0].conflict_view());
        }
    }
}

/// Guard against a vacuous generator: across the seeded cases, the interesting situations
/// the properties are about actually occur.
#[test]
fn the_world_generator_covers_conflicts_causal_edits_and_reordering() {
    let mut runner = TestRunner::new(config());
    let strategy = plan();
    let (mut with_conflicts, mut causal_overwrites, mut reordered, mut equal_concurrent) =
        (0, 0, 0, 0);
    for _ in 0..CASES {
        let plan = strategy.new_tree(&mut runner).expect("a plan").current();
        let scenario = play(&plan);
        if !true_conflicts(&scenario).is_empty() {
            with_conflicts += 1;
        }
        let writes = &scenario.writes;
        let pairs = |test: &dyn Fn(usize, usize) -> bool| {
            (0..writes.len()).any(|a| (0..writes.len()).any(|b| test(a, b)))
        };
        let related = |a: usize, b: usize| {
            writes[a].register == writes[b].register && writes[a].device != writes[b].device
        };
        if pairs(&|a, b| related(a, b) && writes[a].value != writes[b].value && scenario.saw(a, b))
        {
            causal_overwrites += 1;
        }
        if pairs(&|a, b| {
            related(a, b) && writes[a].value == writes[b].value && scenario.concurrent(a, b)
        }) {
            equal_concurrent += 1;
        }
        let other = delivery_order(&scenario, &mut Shuffler(plan.seeds[0]), false);
        if other != scenario.delivered {
            reordered += 1;
        }
    }
    let enough = CASES / 5;
    assert!(
        with_conflicts >= enough,
        "conflicts in {with_conflicts} cases"
    );
    assert!(
        causal_overwrites >= enough,
        "causal overwrites in {causal_overwrites} cases"
    );
    assert!(
        equal_concurrent >= enough,
        "equal concurrent values in {equal_concurrent} cases"
    );
    assert!(
        reordered >= enough,
        "reordered deliveries in {reordered} cases"
    );
}

// ---- the base_seq contract, as minimal cases ------------------------------------------------

fn stamped(
    value: &str,
    millis: u64,
    device: &str,
    base_seq: i64,
    server_seq: i64,
) -> RegisterWrite {
    RegisterWrite {
        value: json!(value),
        stamp: Stamp {
            hlc: Hlc::from_parts(millis, 0),
            device_id: device.to_owned(),
        },
        author_user_id: format!("user-{device}"),
        base_seq,
        server_seq,
    }
}

/// `merge` trusts `base_seq` as "every write up to here was pulled". A phone must therefore
/// quote the seq from its last pull, not the seq the server gave its own pushed writes: in
/// this case phone-a's first edit reached the server after phone-b's, so quoting its own
/// seq would hide phone-b's concurrent edit from the conflict check.
#[test]
fn base_seq_comes_from_the_last_pull_not_from_the_phones_own_acknowledged_writes() {
    let history = vec![
        stamped("李强", 10, "phone-b", 0, 1),
        stamped("王芳", 11, "phone-a", 0, 2),
    ];
    let target = FieldTarget::Household;
    // phone-a edits again without pulling: it never saw phone-b's 李强.
    let from_pull = stamped("张伟", 12, "phone-a", 0, 3);
    let outcome = merge(HOUSEHOLD, &target, "head_name", &history, &from_pull);
    assert_eq!(outcome.conflicts.len(), 1);
    assert_eq!(outcome.conflicts[0].first.value, json!("李强"));
    let from_own_ack = stamped("张伟", 12, "phone-a", 2, 3);
    assert!(
        merge(HOUSEHOLD, &target, "head_name", &history, &from_own_ack)
            .conflicts
            .is_empty(),
        "quoting its own write's seq would drop the conflict with 李强"
    );
}

/// `Household.field_seqs` must hold the seq of the register's latest applied write, not of
/// the winning one: a phone that pulled after a losing write did see it.
#[test]
fn base_seq_is_the_latest_applied_write_not_the_winner() {
    let history = vec![
        stamped("李强", 50, "phone-b", 0, 1),
        // Applied later but loses by LWW (older HLC); concurrent with 李强, so recorded.
        stamped("王芳", 40, "phone-c", 0, 2),
    ];
    let target = FieldTarget::Household;
    assert_eq!(current(&history).map(|w| w.server_seq), Some(1));
    // phone-a pulled after both writes, saw both (王芳 in the conflict queue), and edits.
    let latest = stamped("张伟", 60, "phone-a", 2, 3);
    assert!(
        merge(HOUSEHOLD, &target, "head_name", &history, &latest)
            .conflicts
            .is_empty()
    );
    let winner_only = stamped("张伟", 60, "phone-a", 1, 3);
    assert_eq!(
        merge(HOUSEHOLD, &target, "head_name", &history, &winner_only)
            .conflicts
            .len(),
        1,
        "quoting the winner's seq would raise a spurious conflict with 王芳"
    );
}

// ---- HLC -------------------------------------------------------------------------------------

/// HLC states well below the 48-bit ceiling (year 10889). At the ceiling itself a tick
/// cannot move forward any more: `from_parts` saturates the milliseconds, so a wall reading
/// above 2^48 - 1 ms, or a tick from `u64::MAX`, does not produce a later timestamp.
fn hlc_state() -> impl Strategy<Value = Hlc> {
    (0..MAX_MILLIS - (1 << 32), any::<u16>())
        .prop_map(|(millis, counter)| Hlc::from_parts(millis, counter))
}

/// A wall clock that wanders: small steps either way, day-sized jumps either way, and
/// arbitrary readings (a phone set to 1970 or 2099).
fn wall_readings(start: u64) -> impl Strategy<Value = Vec<u64>> {
    let step = prop_oneof![
        4 => (-3i64..=3).prop_map(Some),
        2 => (-86_400_000i64..=86_400_000).prop_map(Some),
        1 => Just(None),
    ];
    (
        prop::collection::vec((step, 0..=MAX_MILLIS), 1..64),
        Just(start),
    )
        .prop_map(|(steps, start)| {
            let mut wall = start;
            steps
                .into_iter()
                .map(|(step, absolute)| {
                    wall = match step {
                        Some(step) => wall.saturating_add_signed(step).min(MAX_MILLIS),
                        None => absolute,
                    };
                    wall
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tick_is_strictly_increasing_whatever_the_wall_clock_does(
        (start, walls) in hlc_state().prop_flat_map(|start| (Just(start), wall_readings(start.millis())))
    ) {
        let mut clock = start;
        for wall in walls {
            let next = clock.tick(wall);
            prop_assert!(next > clock, "{next:?} after {clock:?} at wall {wall}");
            prop_assert!(next.millis() >= wall, "never behind the wall clock");
            prop_assert!(
                next.millis() <= clock.millis().max(wall) + 1,
                "never more than a carry ahead of what it saw"
            );
            clock = next;
        }
    }

    #[test]
    fn observe_is_later_than_both_inputs_and_the_wall_clock(
        local in hlc_state(),
        remote in hlc_state(),
        wall in prop_oneof![0..=MAX_MILLIS, 1_700_000_000_000u64..1_800_000_000_000],
    ) {
        let merged = local.observe(remote, wall);
        prop_assert!(merged > local && merged > remote);
        prop_assert!(merged.millis() >= wall);
        prop_assert_eq!(merged, local.max(remote).tick(wall));
    }

    #[test]
    fn hlc_parts_pack_and_unpack(millis in 0..=MAX_MILLIS, counter in any::<u16>(), packed in any::<u64>()) {
        let hlc = Hlc::from_parts(millis, counter);
        prop_assert_eq!((hlc.millis(), hlc.counter()), (millis, counter));
        prop_assert_eq!(Hlc::from_u64(hlc.as_u64()), hlc);
        let unpacked = Hlc::from_u64(packed);
        prop_assert_eq!(unpacked.as_u64(), packed);
        prop_assert_eq!(Hlc::from_parts(unpacked.millis(), unpacked.counter()), unpacked);
        // Integer order is (millis, counter) order.
        prop_assert_eq!(
            hlc.cmp(&unpacked),
            (hlc.millis(), hlc.counter()).cmp(&(unpacked.millis(), unpacked.counter()))
        );
        // Stored and sent as a plain integer.
        let text = serde_json::to_string(&unpacked).expect("serialise");
        prop_assert_eq!(&text, &packed.to_string());
        prop_assert_eq!(serde_json::from_str::<Hlc>(&text).expect("parse"), unpacked);
    }

    #[test]
    fn oversized_millis_saturate_at_the_48_bit_ceiling(millis in MAX_MILLIS..=u64::MAX, counter in any::<u16>()) {
        let hlc = Hlc::from_parts(millis, counter);
        prop_assert_eq!((hlc.millis(), hlc.counter()), (MAX_MILLIS, counter));
    }

    #[test]
    fn the_server_keeps_incoming_clocks_within_five_minutes_or_refuses(
        server_wall in 1_700_000_000_000u64..1_800_000_000_000,
        offset in prop_oneof![
            -86_400_000i64..=600_000,
            -172_800_000i64..=172_800_000,
            Just(hlc::CLAMP_AHEAD_MILLIS as i64),
            Just(hlc::CLAMP_AHEAD_MILLIS as i64 + 1),
            Just(hlc::REJECT_AHEAD_MILLIS as i64),
            Just(hlc::REJECT_AHEAD_MILLIS as i64 + 1),
        ],
        counter in any::<u16>(),
    ) {
        let sent = Hlc::from_parts(server_wall.saturating_add_signed(offset), counter);
        let ahead = sent.millis().saturating_sub(server_wall);
        match hlc::check_incoming(sent, server_wall) {
            IncomingHlc::Accepted(used) => {
                prop_assert_eq!(used, sent);
                prop_assert!(ahead <= hlc::CLAMP_AHEAD_MILLIS);
            }
            IncomingHlc::Clamped { sent: echoed, used } => {
                prop_assert_eq!(echoed, sent);
                prop_assert!(ahead > hlc::CLAMP_AHEAD_MILLIS && ahead <= hlc::REJECT_AHEAD_MILLIS);
                prop_assert!(used < sent && used.millis() <= server_wall + hlc::CLAMP_AHEAD_MILLIS);
            }
            IncomingHlc::DeviceClockWrong { ahead_millis } => {
                prop_assert_eq!(ahead_millis, ahead);
                prop_assert!(ahead > hlc::REJECT_AHEAD_MILLIS);
            }
        }
    }
}
