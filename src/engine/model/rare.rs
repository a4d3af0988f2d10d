//! [`Rare`]: a part of a value that most values leave empty, kept behind a pointer that is
//! null until the part is set. A task's spec has several (its agent options, its own
//! permission rules): boxing them takes the typical spec from 768 to 512 bytes, which counts
//! for every task a server holds.

use std::ops::{Deref, DerefMut};

/// A type with an empty value that lives for the whole program, for [`Rare`] to show while
/// nothing is set.
pub trait Empty: Default + PartialEq + 'static {
    /// The empty value (what `Default` makes).
    fn empty() -> &'static Self;
}

/// Reads as `T` (the empty one while nothing is set); the first write through it, or a
/// value given to it, allocates.
#[derive(Clone, Default)]
pub struct Rare<T>(Option<Box<T>>);

impl<T: Empty> Rare<T> {
    /// Whether the part is empty, as the default is.
    pub fn is_empty(&self) -> bool {
        **self == *T::empty()
    }
}

impl<T: Empty> From<T> for Rare<T> {
    /// An empty value takes no memory.
    fn from(value: T) -> Self {
        Self((value != *T::empty()).then(|| Box::new(value)))
    }
}

impl<T: Empty> Deref for Rare<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or_else(|| T::empty())
    }
}

impl<T: Empty> DerefMut for Rare<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }
}

impl<T: Empty> PartialEq for Rare<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Empty + std::fmt::Debug> std::fmt::Debug for Rare<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, Default, PartialEq)]
    struct Part {
        words: Vec<String>,
    }

    impl Empty for Part {
        fn empty() -> &'static Self {
            static EMPTY: Part = Part { words: Vec::new() };
            &EMPTY
        }
    }

    #[test]
    fn reads_empty_until_written_and_compares_by_value() {
        let mut part = Rare::<Part>::default();
        assert!(part.words.is_empty() && part.0.is_none());
        assert_eq!(part, Rare::from(Part::default()));
        assert!(
            Rare::from(Part::default()).0.is_none(),
            "an empty value is not boxed"
        );
        part.words.push("a".into());
        assert!(part.0.is_some() && !part.is_empty());
        assert_eq!(
            part,
            Rare::from(Part {
                words: vec!["a".into()]
            })
        );
        assert_ne!(part, Rare::default());
    }
}
