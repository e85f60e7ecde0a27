//! palaver-load.
