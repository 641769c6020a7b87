//! # crust-query
//!
//! The Crust query language: record filters and sorts, report metrics and dimensions,
//! parsed into our own AST and compiled to parameterised Postgres SQL.
//!
//! Entry points: [`parse_filter`], [`parse_sort`], [`parse_select_list`] (syntax only) and
//! [`compile_filter`], [`compile_sort`], [`compile_report`] (type-checked SQL). Every
//! error is a [`QueryError`] carrying the 1-based column it refers to.
//!
//! Pure computation: no I/O, no async, no database driver. The compiler emits
//! SQL text and its parameters; `crust-store` runs them. `.ci/run` checks that
//! this crate's dependency tree holds no sqlx, lapin, axum or tokio.

pub mod ast;
pub mod compile;
pub mod lexer;
pub mod parser;

#[cfg(test)]
mod fuzz_tests;

pub use ast::{Expr, ExprKind, QueryError, SelectItem, SortItem};
pub use compile::{
    compile_filter, compile_job_filter, compile_job_sort, compile_report, compile_sort, FieldSpec,
    FieldType, Params, Report, ReportColumn, Schema, Ty, JOB_FIELDS,
};
pub use parser::{parse_filter, parse_select_list, parse_sort};
