//! How a value is stored, whatever row it is in: the [`Row`] conversion and the forms
//! every row shares (a shared or rarely set part, a time, a duration, an enum's word), what
//! a sparse row may leave out ([`Unset`]), and [`mirror!`], which declares a row struct
//! with its domain struct's fields.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

use crate::engine::{
    TaskId, TaskStatus,
    model::{
        rare::{Empty, Rare},
        words::Word,
    },
};

/// A value a sparse row may leave out: `unset` holds exactly for the value the field reads
/// back as when it is missing (its `Default`, or the row's). A value with no such form (a
/// word, a time, a shared part) is never unset, so always written.
pub trait Unset {
    fn unset(&self) -> bool;
}

impl<T> Unset for Option<T> {
    fn unset(&self) -> bool {
        self.is_none()
    }
}

impl<T> Unset for Vec<T> {
    fn unset(&self) -> bool {
        self.is_empty()
    }
}

impl<K, V> Unset for BTreeMap<K, V> {
    fn unset(&self) -> bool {
        self.is_empty()
    }
}

impl Unset for String {
    fn unset(&self) -> bool {
        self.is_empty()
    }
}

impl Unset for TaskId {
    fn unset(&self) -> bool {
        self.is_empty()
    }
}

impl Unset for bool {
    fn unset(&self) -> bool {
        !*self
    }
}

macro_rules! unset_when_zero {
    ($($ty:ty),+) => {$(
        impl Unset for $ty {
            fn unset(&self) -> bool {
                *self == 0 as $ty
            }
        }
    )+};
}

unset_when_zero!(u32, u64, f64);

impl<T: Unset> Unset for Box<T> {
    fn unset(&self) -> bool {
        (**self).unset()
    }
}

macro_rules! always_written {
    ($($ty:ident $(<$param:ident>)?),+) => {$(
        impl$(<$param>)? Unset for $ty$(<$param>)? {
            fn unset(&self) -> bool {
                false
            }
        }
    )+};
}

always_written!(TimeRow, Variant<E>, Shared<T>);

/// A stored value and the domain value it stands for.
pub trait Row: Sized {
    type Domain;
    fn from_domain(value: &Self::Domain) -> Self;
    fn into_domain(self) -> Self::Domain;
}

macro_rules! same {
    ($($ty:ty),+) => {$(
        impl Row for $ty {
            type Domain = $ty;
            fn from_domain(value: &$ty) -> Self {
                value.clone()
            }
            fn into_domain(self) -> $ty {
                self
            }
        }
    )+};
}

same!(
    String,
    TaskId,
    bool,
    u16,
    u32,
    u64,
    usize,
    i32,
    f64,
    PathBuf,
    BTreeMap<String, String>,
    serde_json::Value
);

impl<T: Row> Row for Option<T> {
    type Domain = Option<T::Domain>;
    fn from_domain(value: &Self::Domain) -> Self {
        value.as_ref().map(T::from_domain)
    }
    fn into_domain(self) -> Self::Domain {
        self.map(T::into_domain)
    }
}

/// The row of a value the engine shares (`Arc`): the value's own row, stored the same way.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Shared<T>(pub T);

impl<T: Row> Row for Shared<T> {
    type Domain = std::sync::Arc<T::Domain>;
    fn from_domain(value: &Self::Domain) -> Self {
        Self(T::from_domain(value))
    }
    fn into_domain(self) -> Self::Domain {
        std::sync::Arc::new(self.0.into_domain())
    }
}

/// The row of a part most values leave empty ([`Rare`]): the part's own row, stored the same
/// way.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RareRow<T>(pub T);

impl<T: Unset> Unset for RareRow<T> {
    fn unset(&self) -> bool {
        self.0.unset()
    }
}

impl<T: Row> Row for RareRow<T>
where
    T::Domain: Empty,
{
    type Domain = Rare<T::Domain>;
    fn from_domain(value: &Self::Domain) -> Self {
        Self(T::from_domain(value))
    }
    fn into_domain(self) -> Self::Domain {
        self.0.into_domain().into()
    }
}

impl<T: Row> Row for Box<T> {
    type Domain = Box<T::Domain>;
    fn from_domain(value: &Self::Domain) -> Self {
        Box::new(T::from_domain(value))
    }
    fn into_domain(self) -> Self::Domain {
        Box::new((*self).into_domain())
    }
}

impl<T: Row> Row for Vec<T> {
    type Domain = Vec<T::Domain>;
    fn from_domain(value: &Self::Domain) -> Self {
        value.iter().map(T::from_domain).collect()
    }
    fn into_domain(self) -> Self::Domain {
        self.into_iter().map(T::into_domain).collect()
    }
}

impl Row for [u64; TaskStatus::COUNT] {
    type Domain = [u64; TaskStatus::COUNT];
    fn from_domain(value: &Self::Domain) -> Self {
        *value
    }
    fn into_domain(self) -> Self::Domain {
        self
    }
}

/// A time: nanoseconds since the epoch, one number (layout 4). Layouts 1 to 3 wrote
/// serde's own `{secs_since_epoch, nanos_since_epoch}` for it, which is still read.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(from = "TimeForm")]
pub struct TimeRow(u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum TimeForm {
    Nanos(u64),
    Parts {
        secs_since_epoch: u64,
        nanos_since_epoch: u32,
    },
}

impl From<TimeForm> for TimeRow {
    fn from(form: TimeForm) -> Self {
        match form {
            TimeForm::Nanos(nanos) => Self(nanos),
            TimeForm::Parts {
                secs_since_epoch,
                nanos_since_epoch,
            } => Self(
                secs_since_epoch
                    .saturating_mul(1_000_000_000)
                    .saturating_add(u64::from(nanos_since_epoch)),
            ),
        }
    }
}

impl Row for TimeRow {
    type Domain = SystemTime;
    fn from_domain(value: &SystemTime) -> Self {
        let since = value.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }
    fn into_domain(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }
}

/// A duration as layout 1 wrote it.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct DurationRow {
    secs: u64,
    nanos: u32,
}

impl Unset for DurationRow {
    fn unset(&self) -> bool {
        self.secs == 0 && self.nanos == 0
    }
}

impl Row for DurationRow {
    type Domain = Duration;
    fn from_domain(value: &Duration) -> Self {
        Self {
            secs: value.as_secs(),
            nanos: value.subsec_nanos(),
        }
    }
    fn into_domain(self) -> Duration {
        Duration::new(self.secs, self.nanos)
    }
}

/// An enum value stored by its variant's name (`"ApiError"` for the word `api_error`).
#[derive(Clone, Copy, Debug)]
pub struct Variant<E>(E);

fn variant_name(word: &str) -> String {
    word.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

impl<E: Word> Serialize for Variant<E> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&variant_name(self.0.word()))
    }
}

impl<'de, E: Word> Deserialize<'de> for Variant<E> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        E::all()
            .iter()
            .find(|v| variant_name(v.word()) == name)
            .map(|v| Variant(*v))
            .ok_or_else(|| D::Error::custom(format!("unknown value {name:?}")))
    }
}

impl<E: Word> Row for Variant<E> {
    type Domain = E;
    fn from_domain(value: &E) -> Self {
        Variant(*value)
    }
    fn into_domain(self) -> E {
        self.0
    }
}

/// `Row <=> Domain { field: RowType, ... }`: a row struct with the domain struct's fields
/// (each stored as its row type), and both conversions. `sparse Row <=> Domain { ... }`
/// also leaves out each field that is [`Unset`]; the row must read a missing field back
/// as that unset value (a row default that is unset, or the field's own `Default`), which
/// `rows::tests::a_sparse_row_reads_a_missing_field_as_the_unset_one` checks.
macro_rules! mirror {
    (
        $(#[$meta:meta])*
        sparse $row:ident <=> $domain:ident {
            $( $(#[$fmeta:meta])* $field:ident: $ty:ty ),+ $(,)?
        }
    ) => {
        $crate::store::rows::mirror! {
            $(#[$meta])*
            $row <=> $domain {
                $(
                    $(#[$fmeta])*
                    #[serde(skip_serializing_if = "crate::store::rows::Unset::unset")]
                    $field: $ty
                ),+
            }
        }

        impl $crate::store::rows::Unset for $row {
            fn unset(&self) -> bool {
                $( $crate::store::rows::Unset::unset(&self.$field) )&&+
            }
        }
    };
    (
        $(#[$meta:meta])*
        $row:ident <=> $domain:ident {
            $( $(#[$fmeta:meta])* $field:ident: $ty:ty ),+ $(,)?
        }
    ) => {
        // A missing option reads as `None`, so none is written.
        #[serde_with::skip_serializing_none]
        #[derive(Clone, Debug, Serialize, Deserialize)]
        $(#[$meta])*
        pub struct $row {
            $( $(#[$fmeta])* pub $field: $ty ),+
        }

        impl Row for $row {
            type Domain = $domain;
            fn from_domain(value: &$domain) -> Self {
                Self { $($field: Row::from_domain(&value.$field)),+ }
            }
            fn into_domain(self) -> $domain {
                $domain { $($field: self.$field.into_domain()),+ }
            }
        }
    };
}

pub(crate) use mirror;
