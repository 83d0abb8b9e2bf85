//! Pricing: quotes by contextual Thompson sampling ([`model`]). The model is
//! pure and seeded; the keyed machine that serves `/v1/monetizer/quote` and
//! learns from executed and expired quotes builds on it.

pub mod model;
#[cfg(test)]
mod tests;
