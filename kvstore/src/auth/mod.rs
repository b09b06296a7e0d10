//! etcd's v3 auth as pure functions over data, with etcd 3.4's rules and errors: the
//! replicated auth store and its changes, permission checks over key ranges, password
//! hashes and simple tokens. No I/O: the state machine persists `AuthState` and applies
//! `AuthOp`s (`storage::state_machine`), the services ask it before they read or propose
//! (`server`).
//!
//! - `store`: `AuthState` (users, roles, enabled, revision), and `AuthOp`s applied to it.
//! - `op`: `AuthOp`, the replicated changes, and their `Effect` on tokens.
//! - `access`: who may do what, asked of an `AuthState`.
//! - `needs`: what a request needs (READ/WRITE over ranges, lease keys, admin).
//! - `perms`: whether permissions cover a key or a range.
//! - `password`: PBKDF2 password hashes.
//! - `token`: simple tokens, kept in memory on every member.

pub mod access;
pub mod needs;
pub mod op;
pub mod password;
pub mod perms;
pub mod store;
pub mod token;

pub use needs::Need;
pub use op::{AuthOp, Effect};
pub use store::AuthState;
