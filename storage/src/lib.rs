//! palaver-storage.
