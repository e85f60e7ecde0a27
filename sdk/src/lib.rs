//! palaver-sdk.
