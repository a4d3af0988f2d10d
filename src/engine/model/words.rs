//! One table per enum: [`words!`] declares an enum together with `ALL`, `COUNT`, `index`,
//! `as_str` and `parse`, so every surface (the API conversion, REST words, the command
//! line, workflow files, storage rows) reads the same table and no count is written by hand.

/// Declares `pub enum NAME { Variant = "word", ... }` with its table. The variants' order
/// is the order of `ALL` and of `index`, and matches the proto enum's numbering (the proto
/// value is `index + 1`; 0 is UNSPECIFIED), which `api::convert`'s tests check.
macro_rules! words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// How many values there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The position in [`Self::ALL`], for per-value counters.
            pub fn index(self) -> usize {
                self as usize
            }

            /// The lowercase word used by the REST API, workflow files and storage.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            /// The value whose word is `word` (exactly as [`Self::as_str`] writes it).
            pub fn parse(word: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == word)
            }
        }

        impl $crate::engine::model::words::Word for $name {
            fn all() -> &'static [Self] {
                Self::ALL
            }

            fn word(self) -> &'static str {
                self.as_str()
            }

            fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use words;

/// What every [`words!`] enum offers, for code generic over them (storage rows).
pub trait Word: Copy + 'static {
    fn all() -> &'static [Self];
    fn word(self) -> &'static str;
    fn index(self) -> usize;
}
