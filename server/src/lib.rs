//! fieldsync server library: gRPC (Auth, Sync, Media, Review, health, reflection) and the
//! supervisor console on one port. The binary `fieldsync-server` is a thin wrapper around
//! [`run`].

pub mod store;
