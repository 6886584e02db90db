//! The report's vocabulary (DESIGN §2.1): what was seen ([`Category`]),
//! which way it went ([`Effect`]), how exact a count is ([`Qualifier`]) and
//! how the monitor knows ([`Basis`]), each with its list of values and the
//! kebab-case name people type and read (`small-arms-fire`).
//!
//! Each value's name is written once, in the table below, and serves serde
//! (JSON, CSV, GeoJSON), [`name`](Category::name) and [`FromStr`]. Variant
//! order *is* the wire format: postcard encodes a variant by its index
//! (`shared/tests/known_answers.rs` pins the bytes). Do not reorder, insert
//! or remove a value; append only with a new envelope version.
//!
//! Parsing here is exact (`small-arms-fire`); forgiving what a person
//! typed (case, spaces) is the caller's choice.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A word that is not in a vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{word:?} is not a {vocabulary}: use one of {}", names.join(", "))]
pub struct UnknownWord {
    /// Which vocabulary ("category").
    pub vocabulary: &'static str,
    /// What was given.
    pub word: String,
    /// Every name it could have been, in order.
    pub names: &'static [&'static str],
}

/// Defines a vocabulary enum: its variants in wire order, each with its name.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $vis:vis enum $enum:ident ($what:literal) { $($variant:ident => $name:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[allow(missing_docs)] // the variants are DESIGN §2.1's vocabulary, named as monitors say them
        $vis enum $enum {
            $(#[serde(rename = $name)] $variant,)+
        }

        impl $enum {
            /// Every value, in wire order.
            pub const ALL: &'static [$enum] = &[$($enum::$variant),+];

            /// Every value's name, in wire order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The kebab-case name (`small-arms-fire`), as serde writes it.
            pub fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)+
                }
            }
        }

        impl fmt::Display for $enum {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $enum {
            type Err = UnknownWord;

            /// The value with exactly this name.
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($name => Ok($enum::$variant),)+
                    _ => Err(UnknownWord { vocabulary: $what, word: s.to_string(), names: Self::NAMES }),
                }
            }
        }
    };
}

vocabulary! {
    /// What the monitor saw or heard. Enum index = wire value.
    #[derive(PartialOrd, Ord)]
    pub enum Category ("category") {
        Explosion => "explosion",
        Shelling => "shelling",
        SmallArmsFire => "small-arms-fire",
        HeavyWeapons => "heavy-weapons",
        Airstrike => "airstrike",
        Drone => "drone",
        Mine => "mine",
        Casualty => "casualty",
        Damage => "damage",
        MovementRestriction => "movement-restriction",
        ProjectileInFlight => "projectile-in-flight",
        MuzzleFlash => "muzzle-flash",
        IlluminationFlare => "illumination-flare",
        NothingObserved => "nothing-observed",
        Other => "other",
    }
}

vocabulary! {
    /// Which way an explosion went, as far as the monitor could tell.
    pub enum Effect ("effect") {
        Impact => "impact",
        Outgoing => "outgoing",
        Airburst => "airburst",
        Undetermined => "undetermined",
    }
}

vocabulary! {
    /// How exact a count is: "37", "about 30", "at least 37".
    pub enum Qualifier ("count qualifier") {
        Exact => "exact",
        About => "about",
        AtLeast => "at-least",
    }
}

vocabulary! {
    /// How the monitor knows.
    pub enum Basis ("basis") {
        Seen => "seen",
        Heard => "heard",
        Reported => "reported",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the kebab-case of the variant names, as the contract
    /// (DESIGN §2.1) and `#[serde(rename_all = "kebab-case")]` had them.
    fn kebab(variant: &str) -> String {
        let mut s = String::new();
        for (i, c) in variant.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                s.push('-');
            }
            s.push(c.to_ascii_lowercase());
        }
        s
    }

    fn check<T>(all: &[T], names: &[&str])
    where
        T: Copy + fmt::Debug + PartialEq + Serialize + FromStr<Err = UnknownWord>,
    {
        assert_eq!(all.len(), names.len());
        for (v, name) in all.iter().zip(names) {
            assert_eq!(kebab(&format!("{v:?}")), *name);
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::Value::String(name.to_string()));
            assert_eq!(name.parse::<T>().unwrap(), *v);
        }
    }

    #[test]
    fn names_are_kebab_case_and_round_trip() {
        check(Category::ALL, Category::NAMES);
        check(Effect::ALL, Effect::NAMES);
        check(Qualifier::ALL, Qualifier::NAMES);
        check(Basis::ALL, Basis::NAMES);
        assert_eq!(Category::SmallArmsFire.name(), "small-arms-fire");
        assert_eq!(Qualifier::AtLeast.to_string(), "at-least");
    }

    #[test]
    fn wire_values_are_the_variant_order() {
        for (i, c) in Category::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert_eq!(postcard::to_allocvec(c).unwrap(), [i as u8]);
        }
    }

    #[test]
    fn unknown_words_list_what_would_do() {
        let e = "Shelling".parse::<Category>().unwrap_err();
        assert_eq!(e.word, "Shelling");
        assert!(e.to_string().starts_with("\"Shelling\" is not a category: use one of explosion, shelling, "), "{e}");
    }
}
