//! Statements assembled at run time (batched inserts, optional filters),
//! with the placeholders each backend wants.
//!
//! Hand-rolled, and small: sqlx's `QueryBuilder` writes the placeholders of
//! its database, and for the `Any` driver that is `?`, which PostgreSQL
//! refuses. This one has the same shape (push, push_bind, separated,
//! push_values, build) and writes `$1, $2, …` for PostgreSQL but plain `?`
//! for SQLite: sqlx maps a named SQLite parameter (`$n`) to its value by
//! asking SQLite for each parameter's name, a linear search, so a multi-row
//! insert with hundreds of `$n` costs quadratic time; anonymous `?` skip it.

use crate::Backend;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Arguments, Encode, Type};
use std::fmt::{Display, Write};

/// SQL text and the values bound to it.
pub(crate) struct QueryBuilder<'a> {
    sql: String,
    args: Option<AnyArguments<'a>>,
    count: usize,
    /// `$n` (PostgreSQL), else `?` (SQLite).
    numbered: bool,
}

impl<'a> QueryBuilder<'a> {
    /// Starts a statement for `backend` with `init`.
    pub(crate) fn new(backend: Backend, init: impl Into<String>) -> Self {
        QueryBuilder {
            sql: init.into(),
            args: Some(AnyArguments::default()),
            count: 0,
            numbered: backend == Backend::Postgres,
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, sql: impl Display) -> &mut Self {
        write!(self.sql, "{sql}").expect("writing to a String");
        self
    }

    /// Appends a placeholder and binds `value` to it.
    pub(crate) fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        self.count += 1;
        if self.numbered {
            write!(self.sql, "${}", self.count).expect("writing to a String");
        } else {
            self.sql.push('?');
        }
        self.args
            .as_mut()
            .expect("the statement was already built")
            .add(value)
            .expect("binding a value");
        self
    }

    /// Pushes items separated by `separator`.
    pub(crate) fn separated<'b>(&'b mut self, separator: &'static str) -> Separated<'b, 'a> {
        Separated {
            builder: self,
            separator,
            first: true,
        }
    }

    /// Appends `VALUES (..), (..)`, one tuple per item, written by `each`.
    pub(crate) fn push_values<I, F>(&mut self, items: I, mut each: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(Separated<'_, 'a>, I::Item),
    {
        self.push("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push("(");
            each(self.separated(", "), item);
            self.push(")");
        }
        self
    }

    /// The statement, ready to run (once).
    pub(crate) fn build(&mut self) -> Query<'_, Any, AnyArguments<'_>> {
        let args = self.args.take().expect("the statement was already built");
        sqlx::query_with(&self.sql, args)
    }
}

/// Items of a list, with a separator between them.
pub(crate) struct Separated<'b, 'a> {
    builder: &'b mut QueryBuilder<'a>,
    separator: &'static str,
    first: bool,
}

impl<'a> Separated<'_, 'a> {
    fn separate(&mut self) {
        if !self.first {
            self.builder.push(self.separator);
        }
        self.first = false;
    }

    /// A separator (unless first), then SQL text.
    pub(crate) fn push(&mut self, sql: impl Display) -> &mut Self {
        self.separate();
        self.builder.push(sql);
        self
    }

    /// SQL text, no separator.
    pub(crate) fn push_unseparated(&mut self, sql: impl Display) -> &mut Self {
        self.builder.push(sql);
        self
    }

    /// A separator (unless first), then a bound value.
    pub(crate) fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        self.separate();
        self.builder.push_bind(value);
        self
    }

    /// A bound value, no separator.
    pub(crate) fn push_bind_unseparated<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        self.builder.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_and_anonymous_for_sqlite() {
        for (backend, want) in [
            (
                Backend::Postgres,
                "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) WHERE c IN ($5, $6)",
            ),
            (
                Backend::Sqlite,
                "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) WHERE c IN (?, ?)",
            ),
        ] {
            let mut q = QueryBuilder::new(backend, "INSERT INTO t (a, b) ");
            q.push_values([(1i64, "x"), (2, "y")], |mut b, (n, s)| {
                b.push_bind(n).push_bind(s);
            });
            q.push(" WHERE c IN (");
            let mut sep = q.separated(", ");
            sep.push_bind(3i64).push_bind(4i64);
            sep.push_unseparated(")");
            assert_eq!(q.sql, want);
        }
    }
}
