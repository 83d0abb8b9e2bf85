//! Custodial wallets, derived from one master mnemonic along BIP-44 paths:
//!
//! - treasury (faucet, deposits): `m/44'/60'/0'/0/0` — with Anvil's test
//!   mnemonic, the local chain's funded first account;
//! - agent `a`: `m/44'/60'/1'/i₀/i₁/i₂/i₃/i₄`, the agent's UUID split into
//!   five 31-bit-or-less non-hardened indexes (all 128 bits: no two agents share a key);
//! - user `u` (where withdrawals land by default): the same under `2'`.
//!
//! Keys live only in memory; nothing here logs or stores them.

use std::collections::HashMap;
use std::sync::Mutex;

use alloy::primitives::Address;
use alloy::signers::local::{coins_bip39::English, MnemonicBuilder, MnemonicKey, PrivateKeySigner};
use uuid::Uuid;

use crate::ConnectorError;

pub struct Wallets {
    treasury: PrivateKeySigner,
    agents: MnemonicKey,
    users: MnemonicKey,
    cache: Mutex<HashMap<(u8, Uuid), PrivateKeySigner>>,
}

/// The five child indexes a UUID's 128 bits become (31+31+31+31+4 bits).
pub fn path_indexes(id: Uuid) -> [u32; 5] {
    let n = id.as_u128();
    let mask = (1u128 << 31) - 1;
    [
        (n & mask) as u32,
        ((n >> 31) & mask) as u32,
        ((n >> 62) & mask) as u32,
        ((n >> 93) & mask) as u32,
        (n >> 124) as u32,
    ]
}

fn chain_err(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Chain(format!("wallet derivation: {e}"))
}

impl Wallets {
    pub fn from_mnemonic(phrase: &str) -> Result<Self, ConnectorError> {
        let builder = |path: &str| {
            MnemonicBuilder::<English>::default()
                .phrase(phrase)
                .derivation_path(path)
                .map_err(chain_err)
        };
        Ok(Wallets {
            treasury: builder("m/44'/60'/0'/0/0")?.build().map_err(chain_err)?,
            // The parent of the path's last step: m/44'/60'/1' and m/44'/60'/2'.
            agents: builder("m/44'/60'/1'/0")?
                .build_parent_key()
                .map_err(chain_err)?,
            users: builder("m/44'/60'/2'/0")?
                .build_parent_key()
                .map_err(chain_err)?,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn from_config(config: &super::ChainConfig) -> Result<Self, ConnectorError> {
        Self::from_mnemonic(config.mnemonic())
    }

    pub fn treasury(&self) -> &PrivateKeySigner {
        &self.treasury
    }

    fn derive(&self, branch: u8, id: Uuid) -> PrivateKeySigner {
        if let Some(s) = self.cache.lock().expect("wallet cache").get(&(branch, id)) {
            return s.clone();
        }
        let mut key = if branch == 1 {
            self.agents.clone()
        } else {
            self.users.clone()
        };
        for i in path_indexes(id) {
            // Non-hardened indexes below 2^31 of a valid key: derivation
            // fails only with probability ~2^-127 (BIP-32's invalid child).
            key = key.child(i).expect("BIP-32 child derivation");
        }
        let signer = key.signer();
        let mut cache = self.cache.lock().expect("wallet cache");
        if cache.len() > 100_000 {
            cache.clear(); // bounded; re-deriving is cheap
        }
        cache.insert((branch, id), signer.clone());
        signer
    }

    /// The agent's custodial signing key.
    pub fn agent(&self, agent_id: Uuid) -> PrivateKeySigner {
        self.derive(1, agent_id)
    }

    pub fn agent_address(&self, agent_id: Uuid) -> Address {
        self.agent(agent_id).address()
    }

    /// The user's custodial wallet: where withdrawals go unless told otherwise.
    pub fn user_address(&self, user_id: Uuid) -> Address {
        self.derive(2, user_id).address()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_treasury_is_anvils_first_account_and_agents_differ() {
        let w = Wallets::from_mnemonic(super::super::config::DEV_MNEMONIC).unwrap();
        assert_eq!(
            w.treasury().address(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
                .parse::<Address>()
                .unwrap()
        );
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(w.agent_address(a), w.agent_address(a));
        assert_ne!(w.agent_address(a), w.agent_address(b));
        assert_ne!(w.agent_address(a), w.user_address(a));
        let other = Wallets::from_mnemonic(
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
        )
        .unwrap();
        assert_ne!(other.agent_address(a), w.agent_address(a));
    }

    #[test]
    fn path_indexes_cover_all_bits_below_the_hardened_range() {
        let ids = [Uuid::nil(), Uuid::max(), Uuid::new_v4()];
        for id in ids {
            let ix = path_indexes(id);
            assert!(ix.iter().all(|i| *i < 1 << 31));
            let back = ix[0] as u128
                | (ix[1] as u128) << 31
                | (ix[2] as u128) << 62
                | (ix[3] as u128) << 93
                | (ix[4] as u128) << 124;
            assert_eq!(back, id.as_u128());
        }
    }
}
