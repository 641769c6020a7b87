//! Page/perPage handling shared by every paged list.

use serde::{Deserialize, Serialize};

/// Default page size.
pub const DEFAULT_PER_PAGE: i64 = 50;

/// A validated page request: `page` is 0-based, `per_page` within its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Paging {
    pub page: i64,
    pub per_page: i64,
}

impl Paging {
    /// Applies defaults and the cap; a negative page, a page past
    /// [`Paging::max_page`] or a page size below 1 is an error, a size above
    /// the cap is lowered to the cap.
    pub fn new(page: Option<i64>, per_page: Option<i64>, cap: i64) -> crate::Result<Self> {
        let page = page.unwrap_or(0);
        if page < 0 {
            return Err(crate::Error::invalid("page: must be 0 or more"));
        }
        let max_page = Self::max_page(cap);
        if page > max_page {
            return Err(crate::Error::invalid(format!(
                "page: must be at most {max_page}"
            )));
        }
        let per_page = per_page.unwrap_or(DEFAULT_PER_PAGE);
        if per_page < 1 {
            return Err(crate::Error::invalid("perPage: must be at least 1"));
        }
        let per_page = per_page.min(cap);
        if page.checked_mul(per_page).is_none() {
            return Err(crate::Error::invalid("page: is too large"));
        }
        Ok(Self { page, per_page })
    }

    /// The last page a list capped at `cap` entries per page accepts: the
    /// one whose offset still fits in 64 bits, whatever the page size. The
    /// same for every request, so the API document can state it.
    pub fn max_page(cap: i64) -> i64 {
        i64::MAX / cap
    }

    /// Rows to skip.
    pub fn offset(self) -> i64 {
        self.page * self.per_page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_caps_and_rejects() {
        assert_eq!(
            Paging::new(None, None, 100).unwrap(),
            Paging {
                page: 0,
                per_page: 50
            }
        );
        assert_eq!(Paging::new(Some(2), Some(500), 100).unwrap().per_page, 100);
        assert_eq!(Paging::new(Some(2), Some(10), 100).unwrap().offset(), 20);
        assert!(Paging::new(Some(-1), None, 100).is_err());
        assert!(Paging::new(None, Some(0), 100).is_err());
        assert!(Paging::new(Some(i64::MAX), Some(100), 100).is_err());
    }

    #[test]
    fn the_last_page_does_not_depend_on_the_page_size() {
        let last = Paging::max_page(100);
        assert_eq!(last, 92_233_720_368_547_758);
        assert!(Paging::new(Some(last), Some(100), 100).is_ok());
        assert!(Paging::new(Some(last), Some(1), 100).is_ok());
        let err = Paging::new(Some(last + 1), Some(1), 100).unwrap_err();
        assert_eq!(err.to_string(), "page: must be at most 92233720368547758");
        assert_eq!(Paging::max_page(1000), 9_223_372_036_854_775);
    }
}
