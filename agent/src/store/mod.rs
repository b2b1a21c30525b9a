//! Placeholder: the state store (being written).
