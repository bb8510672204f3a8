//! Attacks on a running service, each reproduced and shown refused:
//! refused bodies that would quote a token ([`rejections`]), history pages
//! that would read a whole log ([`history_reads`]), hostile names, origins,
//! IdP addresses and client secrets ([`input_hygiene`]) and unverified
//! identity claims ([`identity`]). The sign-in popup's binding to the page
//! that started the login is in `web_snippet`.

mod history_reads;
mod identity;
mod input_hygiene;
mod rejections;
