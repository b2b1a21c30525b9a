//! End-to-end scenarios across the protocol, agent and simulator crates
//! live in `tests/tests/`; this library is empty on purpose.
