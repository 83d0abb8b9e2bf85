//! The settlement service's decisions, without I/O: token units, fee bumps
//! and what a recorded transfer needs next given what the chain shows.

use std::time::Duration;

use alloy::primitives::{B256, U256};
use rust_decimal::Decimal;

/// EIP-1559 fees of one signed transaction, in wei.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
}

/// A replacement must pay at least 10% more on both fees (nodes refuse less);
/// we add 12.5% and never go below what the chain asks for now.
pub fn bumped(old: Fees, now: Fees) -> Fees {
    let up = |x: u128| x + x / 8 + 1;
    Fees {
        max_fee_per_gas: up(old.max_fee_per_gas).max(now.max_fee_per_gas),
        max_priority_fee_per_gas: up(old.max_priority_fee_per_gas)
            .max(now.max_priority_fee_per_gas),
    }
}

/// `amount` in the token's smallest units; refuses what is not a whole
/// number of them (the ledger's scale is the token's, so this never happens
/// for amounts that passed the money checks) or negative.
pub fn to_units(amount: Decimal, decimals: u8) -> Result<U256, String> {
    let scaled = amount
        .checked_mul(Decimal::from(10u64.pow(decimals as u32)))
        .ok_or_else(|| format!("amount {amount} too large"))?;
    if scaled.is_sign_negative() || scaled.fract() != Decimal::ZERO {
        return Err(format!(
            "amount {amount} is not a whole number of 10^-{decimals} units"
        ));
    }
    let units: u128 = scaled
        .trunc()
        .to_string()
        .parse()
        .map_err(|_| format!("amount {amount} out of range"))?;
    Ok(U256::from(units))
}

/// Units back to a decimal amount (balances shown by the API); `None` if it
/// does not fit a `Decimal` (more than ~7.9·10^28 units).
pub fn from_units(units: U256, decimals: u8) -> Option<Decimal> {
    let n: u128 = units.try_into().ok()?;
    let n: i128 = n.try_into().ok()?;
    Decimal::try_from_i128_with_scale(n, decimals as u32)
        .ok()
        .map(|d| d.normalize())
}

/// Where a recorded transfer stands on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// No receipt for any of its signed versions.
    Pending,
    /// A receipt: the block it is in and whether the transfer succeeded.
    Included {
        block: u64,
        block_hash: B256,
        success: bool,
    },
}

/// What the service does next with one recorded transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet.
    Wait,
    /// Send the signed bytes (again): never sent, or the node forgot them.
    Broadcast,
    /// Sign again with the same nonce and higher fees, then send.
    BumpFees,
    /// Included, not yet deep enough: remember the block.
    Included { block: u64, block_hash: B256 },
    /// The block it was in is no longer canonical: pending again.
    Reorged,
    /// Deep enough on the canonical chain: publish the result.
    Final { success: bool, block: u64 },
}

/// What the service knows of one transfer it signed.
#[derive(Debug, Clone, Copy)]
pub struct Tracked {
    /// The block recorded when it was last seen included.
    pub included: Option<(u64, B256)>,
    pub since_signed: Duration,
    /// `None`: never sent since it was (re)signed.
    pub since_broadcast: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub confirmations: u64,
    pub fee_bump_after: Duration,
    /// Send a still-pending transaction again this often (a node restarted
    /// without its mempool forgets it).
    pub rebroadcast_every: Duration,
}

/// Decides the next step from what the chain shows: `seen` for its receipt,
/// `head` the latest block number, `canonical` the hash of the canonical
/// block at the recorded inclusion height (if any).
pub fn next_step(
    t: &Tracked,
    seen: Seen,
    head: u64,
    canonical: Option<B256>,
    policy: &Policy,
) -> Step {
    match seen {
        Seen::Pending => {
            if t.included.is_some() {
                return Step::Reorged;
            }
            match t.since_broadcast {
                None => Step::Broadcast,
                Some(_) if t.since_signed >= policy.fee_bump_after => Step::BumpFees,
                Some(ago) if ago >= policy.rebroadcast_every => Step::Broadcast,
                Some(_) => Step::Wait,
            }
        }
        Seen::Included {
            block,
            block_hash,
            success,
        } => {
            if let Some((old_block, old_hash)) = t.included {
                let moved = old_block != block || old_hash != block_hash;
                if moved || canonical.is_some_and(|c| c != old_hash) {
                    return Step::Reorged;
                }
            }
            let depth = (head + 1).saturating_sub(block);
            if depth >= policy.confirmations && canonical == Some(block_hash) {
                Step::Final { success, block }
            } else if t.included.is_none() {
                Step::Included { block, block_hash }
            } else {
                Step::Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        confirmations: 3,
        fee_bump_after: Duration::from_secs(30),
        rebroadcast_every: Duration::from_secs(5),
    };

    fn tracked(included: Option<(u64, B256)>, signed: u64, sent: Option<u64>) -> Tracked {
        Tracked {
            included,
            since_signed: Duration::from_secs(signed),
            since_broadcast: sent.map(Duration::from_secs),
        }
    }

    #[test]
    fn units_are_exact() {
        assert_eq!(
            to_units(Decimal::new(1_500_001, 6), 6).unwrap(),
            U256::from(1_500_001u64)
        );
        assert_eq!(
            to_units(Decimal::new(1, 2), 18).unwrap(),
            U256::from(10u128.pow(16))
        );
        assert!(to_units(Decimal::new(1, 7), 6).is_err());
        assert!(to_units(Decimal::new(-1, 0), 6).is_err());
        assert_eq!(
            from_units(U256::from(1_500_001u64), 6),
            Some(Decimal::new(1_500_001, 6))
        );
        assert_eq!(from_units(U256::MAX, 6), None);
    }

    #[test]
    fn fee_bumps_beat_the_replacement_rule_and_the_market() {
        let old = Fees {
            max_fee_per_gas: 1_000,
            max_priority_fee_per_gas: 100,
        };
        let b = bumped(
            old,
            Fees {
                max_fee_per_gas: 10,
                max_priority_fee_per_gas: 1,
            },
        );
        assert!(b.max_fee_per_gas * 10 >= old.max_fee_per_gas * 11);
        assert!(b.max_priority_fee_per_gas * 10 >= old.max_priority_fee_per_gas * 11);
        let market = Fees {
            max_fee_per_gas: 5_000,
            max_priority_fee_per_gas: 500,
        };
        assert_eq!(bumped(old, market), market);
    }

    #[test]
    fn pending_transfers_are_sent_resent_and_bumped() {
        let s = |t| next_step(&t, Seen::Pending, 10, None, &POLICY);
        assert_eq!(s(tracked(None, 0, None)), Step::Broadcast);
        assert_eq!(s(tracked(None, 1, Some(1))), Step::Wait);
        assert_eq!(s(tracked(None, 6, Some(6))), Step::Broadcast);
        assert_eq!(s(tracked(None, 31, Some(1))), Step::BumpFees);
    }

    #[test]
    fn results_wait_for_the_confirmation_depth_on_the_canonical_chain() {
        let h = B256::repeat_byte(7);
        let seen = Seen::Included {
            block: 10,
            block_hash: h,
            success: true,
        };
        let fresh = tracked(None, 1, Some(1));
        assert_eq!(
            next_step(&fresh, seen, 10, Some(h), &POLICY),
            Step::Included {
                block: 10,
                block_hash: h
            }
        );
        let known = tracked(Some((10, h)), 1, Some(1));
        assert_eq!(next_step(&known, seen, 11, Some(h), &POLICY), Step::Wait);
        assert_eq!(
            next_step(&known, seen, 12, Some(h), &POLICY),
            Step::Final {
                success: true,
                block: 10
            }
        );
        // Deep enough, but the block at that height is another one now.
        assert_eq!(
            next_step(&known, seen, 12, Some(B256::ZERO), &POLICY),
            Step::Reorged
        );
        let reverted = Seen::Included {
            block: 10,
            block_hash: h,
            success: false,
        };
        assert_eq!(
            next_step(&fresh, reverted, 20, Some(h), &POLICY),
            Step::Final {
                success: false,
                block: 10
            }
        );
    }

    #[test]
    fn a_reorg_below_the_depth_makes_it_pending_again() {
        let h = B256::repeat_byte(7);
        let known = tracked(Some((10, h)), 1, Some(1));
        assert_eq!(
            next_step(&known, Seen::Pending, 11, None, &POLICY),
            Step::Reorged
        );
        let moved = Seen::Included {
            block: 11,
            block_hash: B256::repeat_byte(8),
            success: true,
        };
        assert_eq!(next_step(&known, moved, 11, None, &POLICY), Step::Reorged);
    }
}
