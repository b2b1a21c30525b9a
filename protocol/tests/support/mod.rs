//! What the protocol's property tests share: one property checked for
//! every message type, each type under its own size limit.

/// One property test per message type, each from a row
/// `name: strategy, limit;`: it draws a value from `strategy` (and an
/// `extra` from the `with` strategy, if one is given) and runs
/// `check(&value, limit, extra)`.
macro_rules! property_per_message {
    (check: $check:expr; $($rows:tt)*) => {
        property_per_message!(check: $check, with: proptest::strategy::Just(()); $($rows)*);
    };
    (check: $check:expr, with: $extra:expr; $($name:ident: $strategy:expr, $max:expr;)*) => {
        proptest::proptest! {
            #![proptest_config(hc_protocol::arbitrary::test_config(256))]
            $(
                #[test]
                fn $name(value in $strategy, extra in $extra) {
                    ($check)(&value, $max, extra)?;
                }
            )*
        }
    };
}
pub(crate) use property_per_message;
