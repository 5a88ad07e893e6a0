//! The lock guard of an array: the only safe way to a mutable view through `&self`.

use std::fmt;

use ndarray::{ArrayViewMut, Dimension};

use crate::element::Element;
use crate::sync::{RawMutexGuard, RobustGuard};

/// The array's lock, held: derefs to the mutable view. Unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Element, D: Dimension> {
    view: ArrayViewMut<'a, T, D>,
    raw: RawMutexGuard<'a>,
}

impl<'a, T: Element, D: Dimension> ArrayGuard<'a, T, D> {
    pub(crate) fn new(view: ArrayViewMut<'a, T, D>, raw: RawMutexGuard<'a>) -> Self {
        ArrayGuard { view, raw }
    }

    /// Whether the previous holder died and the data is not yet marked consistent.
    pub fn owner_died(&self) -> bool {
        self.raw.owner_died()
    }

    /// After an `OwnerDied`, declares the data repaired so the lock stays usable.
    pub fn mark_consistent(&mut self) {
        self.raw.mark_consistent();
    }
}

impl<T: Element, D: Dimension> fmt::Debug for ArrayGuard<'_, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("shape", &self.view.shape())
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

impl<'a, T: Element, D: Dimension> std::ops::Deref for ArrayGuard<'a, T, D> {
    type Target = ArrayViewMut<'a, T, D>;
    fn deref(&self) -> &Self::Target {
        &self.view
    }
}

impl<T: Element, D: Dimension> std::ops::DerefMut for ArrayGuard<'_, T, D> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.view
    }
}

impl<T: Element, D: Dimension> crate::sync::sealed::Sealed for ArrayGuard<'_, T, D> {}

impl<T: Element, D: Dimension> RobustGuard for ArrayGuard<'_, T, D> {
    fn owner_died(&self) -> bool {
        ArrayGuard::owner_died(self)
    }
    fn mark_consistent(&mut self) {
        ArrayGuard::mark_consistent(self)
    }
}
