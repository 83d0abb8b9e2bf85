//! Whose data a request touches. A user has two tenants that never mix: live
//! (its own id) and the sandbox (`test_sk_` keys), whose id is derived from
//! the user's, so every query already scoped by user id is scoped by mode too.

use uuid::Uuid;

/// Live or sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Live,
    Test,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Test => "test",
        }
    }

    /// From the stored text; anything but `test` is live.
    pub fn parse(s: &str) -> Mode {
        if s == "test" {
            Mode::Test
        } else {
            Mode::Live
        }
    }
}

/// The tenant id a user's requests in `mode` act as.
pub fn tenant_of(user_id: Uuid, mode: Mode) -> Uuid {
    match mode {
        Mode::Live => user_id,
        Mode::Test => Uuid::new_v5(&user_id, b"agentbank.sandbox"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_tenants_are_distinct_and_stable() {
        let u = Uuid::new_v4();
        assert_eq!(tenant_of(u, Mode::Live), u);
        assert_ne!(tenant_of(u, Mode::Test), u);
        assert_eq!(tenant_of(u, Mode::Test), tenant_of(u, Mode::Test));
        assert_ne!(
            tenant_of(u, Mode::Test),
            tenant_of(Uuid::new_v4(), Mode::Test)
        );
    }
}
