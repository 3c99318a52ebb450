//! Typed row ids: a tenant's, a mailing's, a client's, a message's. Each is the id of its row,
//! and the types keep one from going where another is meant: `cancel_mailing(tenant, id)`
//! with the two swapped does not compile.

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug,
            Clone,
            Copy,
            Default,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            Hash,
            serde::Serialize,
            serde::Deserialize,
            sqlx::Type,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

row_id! {
    /// A tenant: the user whose clients, mailings, bots and webhooks these are (`users.id`).
    TenantId
}

row_id! {
    /// A mailing (`mailings.id`); a notification's try is one too.
    MailingId
}

row_id! {
    /// A tenant's client: one person blast reaches (`clients.id`).
    ClientId
}

row_id! {
    /// One message: one recipient of one mailing (`messages.id`).
    MessageId
}
