//! palaver-core.
