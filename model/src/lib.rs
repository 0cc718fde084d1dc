//! fieldsync domain model: plain types and pure rules shared by the server and the client
//! core. Nothing here does I/O, touches protobuf or runs SQL, so every rule can be tested in
//! isolation and reused on the phone.

pub mod access;
pub mod areas;
pub mod cadre_roster;
pub mod codes;
pub mod evidence;
pub mod geo;
pub mod hlc;
pub mod household;
pub mod id_number;
pub mod income;
pub mod ledger;
pub mod pairing;
pub mod photo_type;
pub mod policy;
pub mod register;
pub mod review;
pub mod roster;
pub mod sync;
pub mod time_util;
pub mod visit;
pub mod visit_diff;
pub mod wellbeing;

pub use codes::CodeList;
