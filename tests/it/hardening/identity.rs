//! Identity claims as the IdP verified them.
