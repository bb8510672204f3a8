//! Attacks on a running service, each reproduced and shown refused:
//! refused bodies that would quote a token ([`rejections`]), history pages
//! that would read a whole log ([`history_reads`]), hostile names, origins,
//! IdP addresses and client secrets ([`input_hygiene`]), the sign-in popup
//! ([`popup`]) and unverified identity claims ([`identity`]).

mod history_reads;
mod identity;
mod input_hygiene;
mod popup;
mod rejections;
