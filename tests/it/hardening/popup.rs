//! The sign-in popup's callback page.
