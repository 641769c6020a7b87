//! Type checking and compilation of parsed queries to parameterised Postgres SQL.
//!
//! Nothing from the source text is pasted into SQL: fields resolve against the
//! [`Schema`] (or the system columns) and compile to fixed accessor shapes, functions come
//! from a whitelist, and every literal is bound as a text parameter with an explicit cast.
//!
//! Decisions worth knowing:
//! - Name resolution: system columns (`recordID`/`id`, `createdAt`/`created_at`,
//!   `updatedAt`/`updated_at`, `userID`/`user_id`, any case) win; then a module field
//!   with exactly that name; then a module field matching case-insensitively if unique.
//! - A date or date-time compared with a bare integer compares its year:
//!   `DATE(x) > 2010` is `(extract(year from (x)::date) > $n::numeric)`; the same holds
//!   for `BETWEEN` and `IN (…)` when every other operand is an integer literal.
//! - A string literal compared with a date-time must look like `YYYY-MM-DD` or
//!   `YYYY-MM-DD[T ]HH:MM[:SS[.f]][Z|±HH[:MM]]`; it is checked here (a 400), not by Postgres.
//! - Division compiles to `(a / NULLIF(b, 0))`, so dividing by zero gives NULL, not an error.
//! - In metrics, `MIN`/`MAX` of a date or date-time return its Unix epoch seconds, and a field
//!   may only appear inside an aggregate.
//! - Multi-value membership for date-time fields compares the canonical stored string
//!   `YYYY-MM-DDTHH:MM:SSZ`.

use std::fmt;

use super::ast::{ArithOp, CmpOp, Expr, ExprKind, Func, IntervalUnit, QueryError};
use super::parser::{parse_filter, parse_select_list, parse_sort};

type Result<T> = std::result::Result<T, QueryError>;

/// The type of a module field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Number,
    Bool,
    Timestamp,
    Id,
}

/// One field of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    pub ty: FieldType,
    /// The field holds a JSON array of values.
    pub multi: bool,
}

/// The fields of the module being queried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    pub fields: Vec<FieldSpec>,
}

/// Query parameters, bound in order as text (`$1` is `values[0]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pub values: Vec<String>,
}

impl Params {
    pub fn new() -> Self {
        Params { values: Vec::new() }
    }

    /// Adds a parameter and returns its placeholder, e.g. `$3::numeric`.
    /// `cast` must be a type name from our own code, never client input.
    pub fn bind(&mut self, value: String, cast: &str) -> String {
        debug_assert!(cast.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        self.values.push(value);
        format!("${}::{}", self.values.len(), cast)
    }
}

/// One output column of a report: `key` names it in the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportColumn {
    pub key: String,
    pub is_metric: bool,
}

/// A compiled report query; column `i` of the result is `c{i}` and described by `columns[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub sql: String,
    pub params: Vec<String>,
    pub columns: Vec<ReportColumn>,
}

/// The inferred type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Text,
    Number,
    Bool,
    Timestamp,
    Date,
    Id,
    Interval,
    /// A JSON value (a job's `parameters.<name>`): compared with literals
    /// as JSON, so `parameters.n = 5` and `parameters.s = 'x'` both work.
    Json,
    Null,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ty::Text => "Text",
            Ty::Number => "Number",
            Ty::Bool => "Bool",
            Ty::Timestamp => "Timestamp",
            Ty::Date => "Date",
            Ty::Id => "Id",
            Ty::Interval => "Interval",
            Ty::Json => "Json",
            Ty::Null => "Null",
        })
    }
}

impl Ty {
    fn pg(self) -> Option<&'static str> {
        Some(match self {
            Ty::Text => "text",
            Ty::Number => "numeric",
            Ty::Bool => "boolean",
            Ty::Timestamp => "timestamptz",
            Ty::Date => "date",
            Ty::Id => "bigint",
            Ty::Interval => "interval",
            Ty::Json => "jsonb",
            Ty::Null => return None,
        })
    }
}

/// Can values of these types be compared with each other?
fn compatible(a: Ty, b: Ty) -> bool {
    use Ty::*;
    a == b
        || a == Null
        || b == Null
        || matches!(
            (a, b),
            (Timestamp, Date) | (Date, Timestamp) | (Number, Id) | (Id, Number)
        )
}

const TS_FORMAT: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'";

/// Renders a timestamptz (or date) as the canonical UTC string.
fn ts_to_text(sql: &str, ty: Ty) -> String {
    let ts = if ty == Ty::Date {
        format!("({sql})::timestamptz")
    } else {
        sql.to_string()
    };
    format!("to_char(({ts}) AT TIME ZONE 'UTC', {TS_FORMAT})")
}

/// A literal not yet bound, so it can take the type of what it is compared with.
#[derive(Debug, Clone)]
enum Lit {
    Str(String),
    Num(String),
    Bool(bool),
    Null,
    Interval(String),
}

impl Lit {
    fn natural(&self) -> Ty {
        match self {
            Lit::Str(_) => Ty::Text,
            Lit::Num(_) => Ty::Number,
            Lit::Bool(_) => Ty::Bool,
            Lit::Null => Ty::Null,
            Lit::Interval(_) => Ty::Interval,
        }
    }
}

#[derive(Debug, Clone)]
enum Val {
    Sql(String, Ty),
    Lit(Lit, usize),
}

impl Val {
    fn ty(&self) -> Ty {
        match self {
            Val::Sql(_, t) => *t,
            Val::Lit(l, _) => l.natural(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Filter,
    Sort,
    Metric,
    Dimension,
}

/// Field names are embedded in SQL as string literals, so they must have this shape.
fn is_safe_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn system_column(name: &str) -> Option<(&'static str, Ty)> {
    Some(match name.to_ascii_lowercase().as_str() {
        "recordid" | "id" => ("r.id", Ty::Id),
        "createdat" | "created_at" => ("r.created_at", Ty::Timestamp),
        "updatedat" | "updated_at" => ("r.updated_at", Ty::Timestamp),
        "userid" | "user_id" => ("r.user_id", Ty::Id),
        _ => return None,
    })
}

/// What a query runs over: a module's records (`r`) or the jobs table (`j`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Records,
    Jobs,
}

impl Table {
    /// The primary key, the sort's tie-breaker.
    fn id(self) -> &'static str {
        match self {
            Table::Records => "r.id",
            Table::Jobs => "j.id",
        }
    }
}

/// The columns of the jobs table a job search may name, case-insensitively.
/// (A `queue` column, once jobs have one, belongs here: `"queue" =>
/// ("j.queue", Ty::Text)`.)
fn job_column(name: &str) -> Option<(&'static str, Ty)> {
    Some(match name.to_ascii_lowercase().as_str() {
        "jobid" | "id" => ("j.id", Ty::Id),
        "workflowid" => ("j.workflow_id", Ty::Id),
        "status" => ("j.status", Ty::Text),
        "attempt" => ("j.attempt", Ty::Number),
        "key" => ("j.idempotency_key", Ty::Text),
        "worker" => ("j.worker", Ty::Text),
        "error" => ("j.error", Ty::Text),
        "createdat" => ("j.created_at", Ty::Timestamp),
        "startat" => ("j.start_at", Ty::Timestamp),
        "startedat" => ("j.started_at", Ty::Timestamp),
        "finishedat" => ("j.finished_at", Ty::Timestamp),
        "parentjobid" => ("j.parent_job_id", Ty::Id),
        _ => return None,
    })
}

/// The names a job search knows, for the "unknown field" message.
pub const JOB_FIELDS: &str = "jobID, workflowID, status, attempt, key, worker, error, \
     createdAt, startAt, startedAt, finishedAt, parentJobID, parameters.<name>";

/// `parameters.<name>` → `<name>` when it is a name that may be queried.
fn job_parameter(name: &str) -> Option<&str> {
    let (head, rest) = name.split_once('.')?;
    (head.eq_ignore_ascii_case("parameters") && is_safe_field_name(rest)).then_some(rest)
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

/// `YYYY-MM-DD` with a real calendar date (years 1–9999).
fn is_valid_date(b: &[u8]) -> bool {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&b[..4]), digits(&b[5..7]), digits(&b[8..10])) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    y >= 1 && (1..=days).contains(&d)
}

/// `YYYY-MM-DD` or `YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]][Z|±HH[[:]MM]]`.
fn is_valid_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 10 || !is_valid_date(&b[..10]) {
        return false;
    }
    let rest = &b[10..];
    if rest.is_empty() {
        return true;
    }
    if !matches!(rest[0], b'T' | b't' | b' ') {
        return false;
    }
    let t = &rest[1..];
    let two =
        |i: usize, max: u32| -> bool { t.get(i..i + 2).and_then(digits).is_some_and(|v| v <= max) };
    if !(two(0, 23) && t.get(2) == Some(&b':') && two(3, 59)) {
        return false;
    }
    let mut i = 5;
    if t.get(i) == Some(&b':') {
        if !two(i + 1, 59) {
            return false;
        }
        i += 3;
        if t.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while t.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start || i - start > 6 {
                return false;
            }
        }
    }
    match t.get(i) {
        None => true,
        Some(b'Z' | b'z') => i + 1 == t.len(),
        Some(b'+' | b'-') => {
            let z = &t[i + 1..];
            let hh = z.get(..2).and_then(digits).is_some_and(|v| v <= 14);
            let mm = |x: &[u8]| digits(x).is_some_and(|v| v <= 59);
            hh && match z.len() {
                2 => true,
                4 => mm(&z[2..4]),
                5 => z[2] == b':' && mm(&z[3..5]),
                _ => false,
            }
        }
        Some(_) => false,
    }
}

fn interval_text(value: i64, unit: IntervalUnit) -> String {
    match unit {
        IntervalUnit::Second => format!("{value} seconds"),
        IntervalUnit::Minute => format!("{value} minutes"),
        IntervalUnit::Hour => format!("{value} hours"),
        IntervalUnit::Day => format!("{value} days"),
        IntervalUnit::Week => format!("{value} weeks"),
        IntervalUnit::Month => format!("{value} months"),
        // The parser caps |value| at 1 000 000, so this cannot overflow.
        IntervalUnit::Quarter => format!("{} months", value.saturating_mul(3)),
        IntervalUnit::Year => format!("{value} years"),
    }
}

/// Translates a MySQL `DATE_FORMAT` pattern to a Postgres `to_char` pattern. Literal
/// text is double-quoted (with `"` and `\` backslash-escaped) so no letter is interpreted.
pub fn mysql_format_to_pg(fmt: &str) -> std::result::Result<String, String> {
    fn flush(out: &mut String, lit: &mut String) {
        if lit.is_empty() {
            return;
        }
        out.push('"');
        for ch in lit.chars() {
            if ch == '"' || ch == '\\' {
                out.push('\\');
            }
            out.push(ch);
        }
        out.push('"');
        lit.clear();
    }
    let mut out = String::new();
    let mut lit = String::new();
    let mut last_was_pattern = false;
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            lit.push(c);
            continue;
        }
        let pat = match chars.next() {
            None => return Err("DATE_FORMAT pattern ends with a lone %".into()),
            Some('%') => {
                lit.push('%');
                continue;
            }
            Some('Y') => "YYYY",
            Some('y') => "YY",
            Some('m') => "MM",
            Some('c') => "FMMM",
            Some('d') => "DD",
            Some('e') => "FMDD",
            Some('H') => "HH24",
            Some('h') => "HH12",
            Some('i') => "MI",
            Some('s') => "SS",
            Some('M') => "FMMonth",
            Some('b') => "Mon",
            Some('W') => "FMDay",
            Some('a') => "Dy",
            Some('j') => "DDD",
            Some('p') => "AM",
            Some(other) => return Err(format!("unknown DATE_FORMAT specifier %{other}")),
        };
        if lit.is_empty() && last_was_pattern {
            // Keep adjacent patterns apart (`%y%y` must not read as `YYYY`).
            out.push_str("\"\"");
        }
        flush(&mut out, &mut lit);
        out.push_str(pat);
        last_was_pattern = true;
    }
    flush(&mut out, &mut lit);
    Ok(out)
}

struct Compiler<'a> {
    schema: &'a Schema,
    params: &'a mut Params,
    ctx: Ctx,
    in_aggregate: bool,
    table: Table,
}

impl<'a> Compiler<'a> {
    fn new(schema: &'a Schema, params: &'a mut Params, ctx: Ctx) -> Self {
        Compiler {
            schema,
            params,
            ctx,
            in_aggregate: false,
            table: Table::Records,
        }
    }

    /// `parameters.<name> = literal` as containment, which the jobs'
    /// GIN index (`jsonb_path_ops`) answers; `None` when the comparison
    /// has another shape.
    fn parameter_equality(&mut self, lhs: &Expr, rhs: &Expr) -> Result<Option<String>> {
        if self.table != Table::Jobs {
            return Ok(None);
        }
        let (field, literal) = match (&lhs.kind, &rhs.kind) {
            (ExprKind::Field(name), _) => (name, rhs),
            (_, ExprKind::Field(name)) => (name, lhs),
            _ => return Ok(None),
        };
        let Some(name) = job_parameter(field) else {
            return Ok(None);
        };
        let value = match &literal.kind {
            ExprKind::Str(s) => self.params.bind(s.clone(), "text"),
            ExprKind::Number(n) => self.params.bind(n.clone(), "numeric"),
            ExprKind::Bool(b) => self.params.bind(b.to_string(), "boolean"),
            _ => return Ok(None),
        };
        Ok(Some(format!(
            "(j.parameters @> jsonb_build_object('{name}', {value}))"
        )))
    }

    fn lit(&self, lit: Lit, col: usize) -> Result<Val> {
        if self.ctx == Ctx::Sort {
            return Err(QueryError::at("literals are not allowed in a sort", col));
        }
        Ok(Val::Lit(lit, col))
    }

    /// Binds a literal as type `want` (or its natural type). `Ok(None)` means the literal
    /// cannot have that type; `Err` means it has the right kind but a bad value.
    fn bind_lit(&mut self, lit: Lit, col: usize, want: Option<Ty>) -> Result<Option<(String, Ty)>> {
        let want = want.filter(|t| *t != Ty::Null);
        let p = &mut *self.params;
        Ok(Some(match (lit, want) {
            (Lit::Null, None) => ("NULL".into(), Ty::Null),
            (Lit::Null, Some(t)) => match t.pg() {
                Some(pg) => (format!("NULL::{pg}"), t),
                None => ("NULL".into(), Ty::Null),
            },
            (Lit::Str(s), None | Some(Ty::Text)) => (p.bind(s, "text"), Ty::Text),
            (Lit::Str(s), Some(Ty::Timestamp)) => {
                if !is_valid_timestamp(&s) {
                    return Err(QueryError::at(
                        "invalid date-time, expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ",
                        col,
                    ));
                }
                (p.bind(s, "timestamptz"), Ty::Timestamp)
            }
            (Lit::Str(s), Some(Ty::Date)) => {
                if is_valid_date(s.as_bytes()) {
                    (p.bind(s, "date"), Ty::Date)
                } else if is_valid_timestamp(&s) {
                    (p.bind(s, "timestamptz"), Ty::Timestamp)
                } else {
                    return Err(QueryError::at("invalid date, expected YYYY-MM-DD", col));
                }
            }
            (Lit::Str(s) | Lit::Num(s), Some(Ty::Id)) => {
                let ok = s
                    .trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    && s.parse::<i64>().is_ok();
                if !ok {
                    return Err(QueryError::at("invalid ID, expected a whole number", col));
                }
                (p.bind(s, "bigint"), Ty::Id)
            }
            (Lit::Num(n), None | Some(Ty::Number)) => (p.bind(n, "numeric"), Ty::Number),
            (Lit::Bool(b), None | Some(Ty::Bool)) => (p.bind(b.to_string(), "boolean"), Ty::Bool),
            (Lit::Interval(s), None | Some(Ty::Interval)) => (p.bind(s, "interval"), Ty::Interval),
            (Lit::Str(s), Some(Ty::Json)) => (format!("to_jsonb({})", p.bind(s, "text")), Ty::Json),
            (Lit::Num(n), Some(Ty::Json)) => {
                (format!("to_jsonb({})", p.bind(n, "numeric")), Ty::Json)
            }
            (Lit::Bool(b), Some(Ty::Json)) => (
                format!("to_jsonb({})", p.bind(b.to_string(), "boolean")),
                Ty::Json,
            ),
            _ => return Ok(None),
        }))
    }

    /// A value that must have type `want` (NULL allowed) as an argument of `what`.
    fn typed(&mut self, v: Val, want: Ty, what: &str, col: usize) -> Result<String> {
        let ty = v.ty();
        let got = match v {
            Val::Sql(s, t) if t == want || t == Ty::Null => Some(s),
            Val::Sql(..) => None,
            Val::Lit(l, lcol) => self.bind_lit(l, lcol, Some(want))?.map(|(s, _)| s),
        };
        got.ok_or_else(|| QueryError::at(format!("{what} expects {want} but got {ty}"), col))
    }

    /// Any value; literals take their natural type.
    fn any(&mut self, v: Val) -> Result<(String, Ty)> {
        match v {
            Val::Sql(s, t) => Ok((s, t)),
            Val::Lit(l, lcol) => Ok(self
                .bind_lit(l, lcol, None)?
                .unwrap_or_else(|| ("NULL".into(), Ty::Null))),
        }
    }

    /// A date or date-time argument; string literals are read as date-times.
    fn temporal(&mut self, v: Val, what: &str, col: usize) -> Result<(String, Ty)> {
        match v {
            Val::Sql(s, t @ (Ty::Timestamp | Ty::Date)) => Ok((s, t)),
            Val::Sql(s, Ty::Null) => Ok((s, Ty::Timestamp)),
            Val::Lit(l @ (Lit::Str(_) | Lit::Null), lcol) => Ok(self
                .bind_lit(l, lcol, Some(Ty::Timestamp))?
                .unwrap_or_else(|| ("NULL::timestamptz".into(), Ty::Timestamp))),
            v => Err(QueryError::at(
                format!("{what} expects Timestamp but got {}", v.ty()),
                col,
            )),
        }
    }

    /// Operands that are compared with each other: either the year rule (one date/date-time
    /// against integer literals) or a common type that literals are coerced to.
    fn operands(&mut self, vals: Vec<Val>, col: usize) -> Result<Vec<String>> {
        let temporal: Vec<usize> = (0..vals.len())
            .filter(|&i| matches!(vals[i], Val::Sql(_, Ty::Timestamp | Ty::Date)))
            .collect();
        let year_rule = temporal.len() == 1
            && vals.iter().enumerate().all(|(i, v)| {
                i == temporal[0] || matches!(v, Val::Lit(Lit::Num(n), _) if !n.contains('.'))
            });
        if year_rule {
            let mut out = Vec::with_capacity(vals.len());
            for v in vals {
                out.push(match v {
                    Val::Sql(s, _) => format!("extract(year from {s})"),
                    Val::Lit(Lit::Num(n), _) => self.params.bind(n, "numeric"),
                    // Unreachable by construction; refuse rather than guess.
                    Val::Lit(_, c) => return Err(QueryError::at("unexpected literal", c)),
                });
            }
            return Ok(out);
        }
        Ok(self.unify(vals, col)?.0)
    }

    /// Gives all values a common type: the first non-NULL expression's type, else the first
    /// literal's. Expressions must be compatible with it; literals are bound as it.
    fn unify(&mut self, vals: Vec<Val>, col: usize) -> Result<(Vec<String>, Ty)> {
        let anchor = vals
            .iter()
            .find_map(|v| match v {
                Val::Sql(_, t) if *t != Ty::Null => Some(*t),
                _ => None,
            })
            .or_else(|| vals.iter().map(Val::ty).find(|t| *t != Ty::Null))
            .unwrap_or(Ty::Null);
        let mismatch = |t: Ty| QueryError::at(format!("cannot compare {anchor} with {t}"), col);
        let mut out = Vec::with_capacity(vals.len());
        for v in vals {
            match v {
                Val::Sql(s, t) if compatible(anchor, t) => out.push(s),
                Val::Sql(_, t) => return Err(mismatch(t)),
                Val::Lit(l, lcol) => {
                    let natural = l.natural();
                    match self.bind_lit(l, lcol, Some(anchor))? {
                        Some((s, _)) => out.push(s),
                        None => return Err(mismatch(natural)),
                    }
                }
            }
        }
        Ok((out, anchor))
    }

    fn resolve(&self, name: &str, col: usize) -> Result<(String, Ty, bool)> {
        if self.table == Table::Jobs {
            if let Some((sql, ty)) = job_column(name) {
                return Ok((sql.to_string(), ty, false));
            }
            if let Some(parameter) = job_parameter(name) {
                return Ok((format!("(j.parameters->'{parameter}')"), Ty::Json, false));
            }
            return Err(QueryError::at(format!("unknown field \"{name}\""), col));
        }
        if let Some((sql, ty)) = system_column(name) {
            return Ok((sql.to_string(), ty, false));
        }
        let fields = &self.schema.fields;
        let spec = match fields.iter().find(|f| f.name == name) {
            Some(f) => f,
            None => {
                let mut ci = fields.iter().filter(|f| f.name.eq_ignore_ascii_case(name));
                match (ci.next(), ci.next()) {
                    (Some(f), None) => f,
                    _ => {
                        return Err(QueryError::at(format!("unknown field \"{name}\""), col));
                    }
                }
            }
        };
        if !is_safe_field_name(&spec.name) {
            return Err(QueryError::at(
                format!("field \"{name}\" has a name that cannot be queried"),
                col,
            ));
        }
        let path = format!("r.values->'{}'", spec.name);
        if spec.multi {
            return Ok((format!("({path})"), field_ty(spec.ty), true));
        }
        let (func, ty) = match spec.ty {
            FieldType::Text => ("crust_text", Ty::Text),
            FieldType::Number => ("crust_num", Ty::Number),
            FieldType::Bool => ("crust_bool", Ty::Bool),
            FieldType::Timestamp => ("crust_ts", Ty::Timestamp),
            FieldType::Id => ("crust_id", Ty::Id),
        };
        Ok((format!("{func}({path})"), ty, false))
    }

    fn check_field_context(&self, name: &str, col: usize) -> Result<()> {
        if self.ctx == Ctx::Metric && !self.in_aggregate {
            return Err(QueryError::at(
                format!("field \"{name}\" must be inside an aggregate in a metric"),
                col,
            ));
        }
        Ok(())
    }

    fn expr(&mut self, e: &Expr) -> Result<Val> {
        let col = e.col;
        match &e.kind {
            ExprKind::Null => self.lit(Lit::Null, col),
            ExprKind::Bool(b) => self.lit(Lit::Bool(*b), col),
            ExprKind::Number(n) => self.lit(Lit::Num(n.clone()), col),
            ExprKind::Str(s) => self.lit(Lit::Str(s.clone()), col),
            ExprKind::Interval { value, unit } => {
                self.lit(Lit::Interval(interval_text(*value, *unit)), col)
            }
            ExprKind::Field(name) => {
                let (sql, ty, multi) = self.resolve(name, col)?;
                if multi {
                    return Err(QueryError::at(
                        format!("field \"{name}\" holds several values; use 'x' IN {name}"),
                        col,
                    ));
                }
                self.check_field_context(name, col)?;
                Ok(Val::Sql(sql, ty))
            }
            ExprKind::Not(inner) => {
                let v = self.expr(inner)?;
                let s = self.typed(v, Ty::Bool, "NOT", col)?;
                Ok(Val::Sql(format!("(NOT {s})"), Ty::Bool))
            }
            ExprKind::Neg(inner) => match self.expr(inner)? {
                Val::Lit(Lit::Num(n), c) => {
                    let n = match n.strip_prefix('-') {
                        Some(pos) => pos.to_string(),
                        None => format!("-{n}"),
                    };
                    Ok(Val::Lit(Lit::Num(n), c))
                }
                Val::Sql(s, Ty::Number) => Ok(Val::Sql(format!("(-{s})"), Ty::Number)),
                v => Err(QueryError::at(
                    format!("unary minus expects Number but got {}", v.ty()),
                    col,
                )),
            },
            ExprKind::And(items) | ExprKind::Or(items) => {
                let word = if matches!(e.kind, ExprKind::And(_)) {
                    "AND"
                } else {
                    "OR"
                };
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    let v = self.expr(item)?;
                    parts.push(self.typed(v, Ty::Bool, word, item.col)?);
                }
                Ok(Val::Sql(
                    format!("({})", parts.join(&format!(" {word} "))),
                    Ty::Bool,
                ))
            }
            ExprKind::Compare { op, lhs, rhs } => {
                if *op == CmpOp::Eq {
                    if let Some(sql) = self.parameter_equality(lhs, rhs)? {
                        return Ok(Val::Sql(sql, Ty::Bool));
                    }
                }
                let l = self.expr(lhs)?;
                let r = self.expr(rhs)?;
                let ops = self.operands(vec![l, r], col)?;
                Ok(Val::Sql(
                    format!("({} {} {})", ops[0], CmpOp::sql(*op), ops[1]),
                    Ty::Bool,
                ))
            }
            ExprKind::Arith { first, rest } => {
                let mut acc = self.expr(first)?;
                for (op, ocol, item) in rest {
                    let r = self.expr(item)?;
                    acc = self.arith(acc, *op, r, *ocol)?;
                }
                Ok(acc)
            }
            ExprKind::Like {
                expr,
                pattern,
                negated,
            } => {
                let v = self.expr(expr)?;
                let s = self.typed(v, Ty::Text, "LIKE", col)?;
                let v = self.expr(pattern)?;
                let p = self.typed(v, Ty::Text, "LIKE", col)?;
                let not = if *negated { "NOT " } else { "" };
                Ok(Val::Sql(format!("({s} {not}ILIKE {p})"), Ty::Bool))
            }
            ExprKind::InList {
                expr,
                list,
                negated,
            } => {
                let mut vals = Vec::with_capacity(list.len() + 1);
                vals.push(self.expr(expr)?);
                for item in list {
                    vals.push(self.expr(item)?);
                }
                let ops = self.operands(vals, col)?;
                let not = if *negated { "NOT " } else { "" };
                Ok(Val::Sql(
                    format!("({} {not}IN ({}))", ops[0], ops[1..].join(", ")),
                    Ty::Bool,
                ))
            }
            ExprKind::InField {
                expr,
                field,
                field_col,
                negated,
            } => self.in_field(expr, field, *field_col, *negated, col),
            ExprKind::IsNull { expr, negated } => {
                let v = self.expr(expr)?;
                let (s, _) = self.any(v)?;
                let not = if *negated { "NOT " } else { "" };
                Ok(Val::Sql(format!("({s} IS {not}NULL)"), Ty::Bool))
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let vals = vec![self.expr(expr)?, self.expr(low)?, self.expr(high)?];
                let ops = self.operands(vals, col)?;
                let not = if *negated { "NOT " } else { "" };
                Ok(Val::Sql(
                    format!("({} {not}BETWEEN {} AND {})", ops[0], ops[1], ops[2]),
                    Ty::Bool,
                ))
            }
            ExprKind::Call { func, args } => self.call(*func, args, col),
        }
    }

    fn arith(&mut self, l: Val, op: ArithOp, r: Val, col: usize) -> Result<Val> {
        let (lt, rt) = (l.ty(), r.ty());
        let numeric = |t: Ty| matches!(t, Ty::Number | Ty::Null);
        if numeric(lt) && numeric(rt) {
            let ls = self.typed(l, Ty::Number, op.sql(), col)?;
            let rs = self.typed(r, Ty::Number, op.sql(), col)?;
            let sql = match op {
                ArithOp::Div => format!("({ls} / NULLIF({rs}, 0))"),
                _ => format!("({ls} {} {rs})", op.sql()),
            };
            return Ok(Val::Sql(sql, Ty::Number));
        }
        let temporal = |v: &Val| {
            matches!(v.ty(), Ty::Timestamp | Ty::Date) || matches!(v, Val::Lit(Lit::Str(_), _))
        };
        let (ts, iv, ts_first) =
            if matches!(op, ArithOp::Add | ArithOp::Sub) && rt == Ty::Interval && temporal(&l) {
                (l, r, true)
            } else if op == ArithOp::Add && lt == Ty::Interval && temporal(&r) {
                (r, l, false)
            } else {
                return Err(QueryError::at(
                    format!("cannot apply {} to {lt} and {rt}", op.sql()),
                    col,
                ));
            };
        let (s, t) = self.temporal(ts, op.sql(), col)?;
        let s = if t == Ty::Date {
            format!("({s})::timestamptz")
        } else {
            s
        };
        let i = self.typed(iv, Ty::Interval, op.sql(), col)?;
        let sql = if ts_first {
            format!("({s} {} {i})", op.sql())
        } else {
            format!("({i} + {s})")
        };
        Ok(Val::Sql(sql, Ty::Timestamp))
    }

    fn in_field(
        &mut self,
        expr: &Expr,
        field: &str,
        field_col: usize,
        negated: bool,
        col: usize,
    ) -> Result<Val> {
        let (path, fty, multi) = self.resolve(field, field_col)?;
        if !multi {
            return Err(QueryError::at(
                format!("field \"{field}\" holds a single value; use = or IN (...)"),
                field_col,
            ));
        }
        self.check_field_context(field, field_col)?;
        let (s, _) = match self.expr(expr)? {
            Val::Sql(s, t) if compatible(fty, t) => (s, t),
            Val::Sql(_, t) => {
                return Err(QueryError::at(
                    format!("cannot compare {fty} with {t}"),
                    col,
                ))
            }
            Val::Lit(l, lcol) => {
                let natural = l.natural();
                self.bind_lit(l, lcol, Some(fty))?.ok_or_else(|| {
                    QueryError::at(format!("cannot compare {fty} with {natural}"), col)
                })?
            }
        };
        // Stored JSON shapes: IDs are strings, date-times epoch seconds,
        // numbers and booleans native.
        let json = match fty {
            Ty::Id => format!("({s})::text"),
            Ty::Timestamp | Ty::Date => format!("extract(epoch from {s})::bigint"),
            _ => s,
        };
        let test = format!("({path} @> jsonb_build_array({json}))");
        Ok(Val::Sql(
            if negated {
                format!("(NOT {test})")
            } else {
                test
            },
            Ty::Bool,
        ))
    }

    fn call(&mut self, func: Func, args: &[Expr], col: usize) -> Result<Val> {
        let name = func.name();
        if func.is_aggregate() {
            if self.ctx != Ctx::Metric {
                return Err(QueryError::at(
                    format!("aggregate {name} is only allowed in metrics"),
                    col,
                ));
            }
            if self.in_aggregate {
                return Err(QueryError::at("aggregates cannot be nested", col));
            }
            self.in_aggregate = true;
            let r = self.aggregate(func, args, col);
            self.in_aggregate = false;
            return r;
        }
        let (min, max) = func.arity();
        if args.len() < min || max.is_some_and(|m| args.len() > m) {
            return Err(QueryError::at(
                format!("wrong number of arguments to {name}"),
                col,
            ));
        }
        let arg = |i: usize| {
            args.get(i)
                .ok_or_else(|| QueryError::at("missing argument", col))
        };
        match func {
            Func::Date => {
                let v = self.expr(arg(0)?)?;
                let (s, _) = self.temporal(v, name, col)?;
                Ok(Val::Sql(format!("({s})::date"), Ty::Date))
            }
            Func::Year | Func::Quarter | Func::Month | Func::Day => {
                let v = self.expr(arg(0)?)?;
                let (s, _) = self.temporal(v, name, col)?;
                let part = name.to_ascii_lowercase();
                Ok(Val::Sql(
                    format!("extract({part} from {s})::int"),
                    Ty::Number,
                ))
            }
            Func::DateFormat => {
                let v = self.expr(arg(0)?)?;
                let (s, _) = self.temporal(v, name, col)?;
                let fmt_expr = arg(1)?;
                let ExprKind::Str(fmt) = &fmt_expr.kind else {
                    return Err(QueryError::at(
                        "DATE_FORMAT needs a string literal as its format",
                        fmt_expr.col,
                    ));
                };
                let pattern =
                    mysql_format_to_pg(fmt).map_err(|m| QueryError::at(m, fmt_expr.col))?;
                if self.ctx == Ctx::Sort {
                    return Err(QueryError::at(
                        "literals are not allowed in a sort",
                        fmt_expr.col,
                    ));
                }
                let p = self.params.bind(pattern, "text");
                Ok(Val::Sql(format!("to_char({s}, {p})"), Ty::Text))
            }
            Func::Concat => {
                let mut parts = Vec::with_capacity(args.len());
                for a in args {
                    let v = self.expr(a)?;
                    let (s, t) = self.any(v)?;
                    parts.push(if t == Ty::Text {
                        s
                    } else {
                        format!("({s})::text")
                    });
                }
                Ok(Val::Sql(format!("concat({})", parts.join(", ")), Ty::Text))
            }
            Func::Now => Ok(Val::Sql("now()".into(), Ty::Timestamp)),
            Func::DateAdd | Func::DateSub => {
                let v = self.expr(arg(0)?)?;
                let (s, t) = self.temporal(v, name, col)?;
                let s = if t == Ty::Date {
                    format!("({s})::timestamptz")
                } else {
                    s
                };
                let iv_expr = arg(1)?;
                let iv = self.expr(iv_expr)?;
                if iv.ty() != Ty::Interval {
                    return Err(QueryError::at(
                        format!("{name} expects INTERVAL n UNIT as its second argument"),
                        iv_expr.col,
                    ));
                }
                let i = self.typed(iv, Ty::Interval, name, iv_expr.col)?;
                let op = if func == Func::DateAdd { "+" } else { "-" };
                Ok(Val::Sql(format!("({s} {op} {i})"), Ty::Timestamp))
            }
            Func::Lower | Func::Upper => {
                let v = self.expr(arg(0)?)?;
                let s = self.typed(v, Ty::Text, name, col)?;
                Ok(Val::Sql(
                    format!("{}({s})", name.to_ascii_lowercase()),
                    Ty::Text,
                ))
            }
            Func::Coalesce => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.expr(a)?);
                }
                let (parts, ty) = self.unify(vals, col)?;
                Ok(Val::Sql(format!("coalesce({})", parts.join(", ")), ty))
            }
            _ => Err(QueryError::at(
                format!("function {name} is not allowed"),
                col,
            )),
        }
    }

    fn aggregate(&mut self, func: Func, args: &[Expr], col: usize) -> Result<Val> {
        let name = func.name();
        let Some(first) = args.first() else {
            return if func == Func::Count {
                Ok(Val::Sql("count(*)".into(), Ty::Number))
            } else {
                Err(QueryError::at(format!("{name} needs an argument"), col))
            };
        };
        if args.len() > 1 {
            return Err(QueryError::at(format!("{name} takes 1 argument"), col));
        }
        let v = self.expr(first)?;
        let sql = match func {
            Func::Count => format!("count({})", self.any(v)?.0),
            Func::Sum | Func::Avg | Func::Std => {
                let s = self.typed(v, Ty::Number, name, col)?;
                let f = match func {
                    Func::Sum => "sum",
                    Func::Avg => "avg",
                    _ => "stddev_pop",
                };
                format!("{f}({s})")
            }
            _ => {
                let f = if func == Func::Min { "min" } else { "max" };
                match v {
                    Val::Sql(s, Ty::Timestamp | Ty::Date) => {
                        format!("{f}(extract(epoch from {s}))")
                    }
                    Val::Sql(s, Ty::Id) => format!("{f}({s})"),
                    v => format!("{f}({})", self.typed(v, Ty::Number, name, col)?),
                }
            }
        };
        Ok(Val::Sql(sql, Ty::Number))
    }
}

fn field_ty(t: FieldType) -> Ty {
    match t {
        FieldType::Text => Ty::Text,
        FieldType::Number => Ty::Number,
        FieldType::Bool => Ty::Bool,
        FieldType::Timestamp => Ty::Timestamp,
        FieldType::Id => Ty::Id,
    }
}

/// Most values one query binds (Postgres takes 65 535 parameters).
pub const MAX_PARAMS: usize = 10_000;

/// Refuses a query that binds more than [`MAX_PARAMS`] values.
fn check_params(params: &Params) -> Result<()> {
    if params.values.len() <= MAX_PARAMS {
        return Ok(());
    }
    Err(QueryError::new(
        format!("at most {MAX_PARAMS} literal values are allowed"),
        None,
    ))
}

/// Compiles a filter to a SQL boolean expression (for WHERE, without a leading AND), or
/// `None` when it is blank. Literals are appended to `params`.
pub fn compile_filter(src: &str, schema: &Schema, params: &mut Params) -> Result<Option<String>> {
    let sql = compile_condition(src, schema, params, Table::Records)?;
    check_params(params)?;
    Ok(sql)
}

/// Compiles a job search filter over the jobs table aliased `j`: the
/// columns of [`JOB_FIELDS`] and `parameters.<name>` (JSON values; `=`
/// against a literal compiles to `@>` so the GIN index serves it).
pub fn compile_job_filter(src: &str, params: &mut Params) -> Result<Option<String>> {
    let schema = Schema::default();
    let sql = compile_condition(src, &schema, params, Table::Jobs)?;
    check_params(params)?;
    Ok(sql)
}

/// Compiles a job search sort (blank: newest first, `j.id DESC`).
pub fn compile_job_sort(src: &str) -> Result<String> {
    compile_sort_over(src, &Schema::default(), Table::Jobs)
}

fn compile_condition(
    src: &str,
    schema: &Schema,
    params: &mut Params,
    table: Table,
) -> Result<Option<String>> {
    let Some(expr) = parse_filter(src)? else {
        return Ok(None);
    };
    let mut c = Compiler::new(schema, params, Ctx::Filter);
    c.table = table;
    let v = c.expr(&expr)?;
    let ty = v.ty();
    match v {
        Val::Sql(s, Ty::Bool | Ty::Null) => Ok(Some(s)),
        Val::Lit(l @ (Lit::Bool(_) | Lit::Null), lcol) => {
            Ok(c.bind_lit(l, lcol, Some(Ty::Bool))?.map(|(s, _)| s))
        }
        _ => Err(QueryError::at(
            format!("the filter must be a condition, not a {ty}"),
            expr.col,
        )),
    }
}

/// Compiles a sort to an ORDER BY list (without the keywords). Blank gives `r.id DESC`;
/// items keep Postgres's own null order (NULLs last ascending, first descending, so one
/// index per field serves both directions), and `r.id` is appended as a tie-breaker in the
/// last item's direction unless the sort already orders by `r.id`. Literals are not allowed.
pub fn compile_sort(src: &str, schema: &Schema) -> Result<String> {
    compile_sort_over(src, schema, Table::Records)
}

fn compile_sort_over(src: &str, schema: &Schema, table: Table) -> Result<String> {
    let id = table.id();
    let items = parse_sort(src)?;
    let mut params = Params::new();
    let mut c = Compiler::new(schema, &mut params, Ctx::Sort);
    c.table = table;
    let mut parts = Vec::with_capacity(items.len() + 1);
    let mut has_id = false;
    let mut last_descending = true;
    for item in &items {
        let (s, _) = match c.expr(&item.expr)? {
            Val::Sql(s, t) => (s, t),
            Val::Lit(_, lcol) => {
                return Err(QueryError::at("literals are not allowed in a sort", lcol))
            }
        };
        has_id |= s == id;
        last_descending = item.descending;
        let dir = if item.descending { "DESC" } else { "ASC" };
        // Postgres's own null order (last ascending, first descending), so
        // one index per field serves both directions.
        parts.push(format!("{s} {dir}"));
    }
    if !params.values.is_empty() {
        return Err(QueryError::new("literals are not allowed in a sort", None));
    }
    if !has_id {
        // The tie-breaker follows the last key's direction, which is what
        // an index on (field, id) delivers by scanning one way.
        parts.push(format!(
            "{id} {}",
            if last_descending { "DESC" } else { "ASC" }
        ));
    }
    Ok(parts.join(", "))
}

fn in_part(part: &str, e: QueryError) -> QueryError {
    QueryError {
        message: format!("{part}: {}", e.message),
        column: e.column,
    }
}

/// Compiles a report. `$1` is the module id. Errors are prefixed with the part they come
/// from (`metrics: `, `dimensions: `, `filter: `), since the columns refer to that text.
pub fn compile_report(
    module_id: i64,
    schema: &Schema,
    metrics: &str,
    dimensions: &str,
    filter: &str,
) -> Result<Report> {
    let mut params = Params::new();
    // Our own integer, not client text: written as a literal so Postgres
    // prunes to the module's partition when it plans the query.
    let module = module_id.to_string();
    let metric_items = parse_select_list(metrics).map_err(|e| in_part("metrics", e))?;
    let dim_items = parse_select_list(dimensions).map_err(|e| in_part("dimensions", e))?;

    let mut select = vec!["count(*)::float8 AS c0".to_string()];
    let mut columns = vec![ReportColumn {
        key: "count".into(),
        is_metric: true,
    }];

    for (i, item) in metric_items.iter().enumerate() {
        let key = item
            .alias
            .clone()
            .unwrap_or_else(|| format!("metric_{}", i + 1));
        let is_count_star = matches!(&item.expr.kind,
            ExprKind::Call { func: Func::Count, args } if args.is_empty());
        if key == "count" && is_count_star {
            continue;
        }
        if columns.iter().any(|c| c.key == key) {
            return Err(in_part(
                "metrics",
                QueryError::at(format!("duplicate column name \"{key}\""), item.expr.col),
            ));
        }
        let mut c = Compiler::new(schema, &mut params, Ctx::Metric);
        let s = c
            .expr(&item.expr)
            .and_then(|v| {
                let ty = v.ty();
                match v {
                    Val::Sql(s, Ty::Number | Ty::Id | Ty::Null) => Ok(s),
                    Val::Lit(l @ (Lit::Num(_) | Lit::Null), lcol) => Ok(c
                        .bind_lit(l, lcol, Some(Ty::Number))?
                        .map(|(s, _)| s)
                        .unwrap_or_else(|| "NULL".into())),
                    _ => Err(QueryError::at(
                        format!("a metric must be a number, not a {ty}"),
                        item.expr.col,
                    )),
                }
            })
            .map_err(|e| in_part("metrics", e))?;
        select.push(format!("({s})::float8 AS c{}", columns.len()));
        columns.push(ReportColumn {
            key,
            is_metric: true,
        });
    }

    let mut ordinals = Vec::with_capacity(dim_items.len());
    for (i, item) in dim_items.iter().enumerate() {
        let key = item
            .alias
            .clone()
            .unwrap_or_else(|| format!("dimension_{}", i + 1));
        if columns.iter().any(|c| c.key == key) {
            return Err(in_part(
                "dimensions",
                QueryError::at(format!("duplicate column name \"{key}\""), item.expr.col),
            ));
        }
        let mut c = Compiler::new(schema, &mut params, Ctx::Dimension);
        let (s, ty) = c
            .expr(&item.expr)
            .and_then(|v| c.any(v))
            .map_err(|e| in_part("dimensions", e))?;
        let text = match ty {
            Ty::Timestamp => ts_to_text(&s, ty),
            Ty::Date => format!("to_char({s}, 'YYYY-MM-DD')"),
            _ => format!("({s})::text"),
        };
        select.push(format!("{text} AS c{}", columns.len()));
        ordinals.push((columns.len() + 1).to_string());
        columns.push(ReportColumn {
            key,
            is_metric: false,
        });
    }

    let filter_sql =
        compile_filter(filter, schema, &mut params).map_err(|e| in_part("filter", e))?;

    let mut sql = format!(
        "SELECT {} FROM records r WHERE r.module_id = {module} AND r.deleted_at IS NULL",
        select.join(", ")
    );
    if let Some(f) = filter_sql {
        sql.push_str(&format!(" AND ({f})"));
    }
    check_params(&params)?;
    if !ordinals.is_empty() {
        let list = ordinals.join(", ");
        sql.push_str(&format!(" GROUP BY {list} ORDER BY {list}"));
    }
    Ok(Report {
        sql,
        params: params.values,
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn schema() -> Schema {
        let f = |name: &str, ty: FieldType, multi: bool| FieldSpec {
            name: name.into(),
            ty,
            multi,
        };
        Schema {
            fields: vec![
                f("amount", FieldType::Number, false),
                f("money", FieldType::Number, false),
                f("status", FieldType::Text, false),
                f("name", FieldType::Text, false),
                f("closedAt", FieldType::Timestamp, false),
                f("foo", FieldType::Timestamp, false),
                f("active", FieldType::Bool, false),
                f("accountId", FieldType::Id, false),
                f("tags", FieldType::Text, true),
                f("scores", FieldType::Number, true),
                f("owners", FieldType::Id, true),
                f("dates", FieldType::Timestamp, true),
                f("flags", FieldType::Bool, true),
                f("Email", FieldType::Text, false),
                f("dup", FieldType::Text, false),
                f("DUP", FieldType::Text, false),
                f("bad-name", FieldType::Text, false),
            ],
        }
    }

    fn filter(src: &str) -> (String, Vec<String>) {
        let mut p = Params::new();
        match compile_filter(src, &schema(), &mut p) {
            Ok(Some(sql)) => (sql, p.values),
            Ok(None) => ("<none>".into(), p.values),
            Err(e) => panic!("{src}: {e}"),
        }
    }

    fn sql(src: &str) -> String {
        filter(src).0
    }

    fn ferr(src: &str) -> String {
        let mut p = Params::new();
        match compile_filter(src, &schema(), &mut p) {
            Ok(s) => panic!("{src}: expected an error, got {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn params_bind_in_order() {
        let mut p = Params::new();
        assert_eq!(p.bind("7".into(), "bigint"), "$1::bigint");
        assert_eq!(p.bind("x".into(), "text"), "$2::text");
        // Caller-bound parameters come first; the filter continues numbering.
        let s = compile_filter("status = 'won'", &schema(), &mut p).unwrap();
        assert_eq!(
            s.as_deref(),
            Some("(crust_text(r.values->'status') = $3::text)")
        );
        assert_eq!(p.values, strs(&["7", "x", "won"]));
    }

    #[test]
    fn blank_filter() {
        assert_eq!(sql("   "), "<none>");
    }

    #[test]
    fn representative_filter() {
        let (s, p) = filter("amount > 100 AND (status = 'won' OR status = 'lost')");
        assert_eq!(
            s,
            "((crust_num(r.values->'amount') > $1::numeric) AND \
             ((crust_text(r.values->'status') = $2::text) OR (crust_text(r.values->'status') = $3::text)))"
        );
        assert_eq!(p, strs(&["100", "won", "lost"]));
    }

    #[test]
    fn or_is_grouped_and_parentheses_keep_meaning() {
        assert_eq!(
            sql("amount = 1 OR money = 2"),
            "((crust_num(r.values->'amount') = $1::numeric) OR (crust_num(r.values->'money') = $2::numeric))"
        );
        assert_eq!(
            sql("(amount = 1 AND money = 2) OR status = 'x'"),
            "(((crust_num(r.values->'amount') = $1::numeric) AND (crust_num(r.values->'money') = $2::numeric)) OR (crust_text(r.values->'status') = $3::text))"
        );
    }

    #[test]
    fn accessor_shapes_for_every_type_and_system_columns() {
        assert_eq!(
            sql("name = 'a'"),
            "(crust_text(r.values->'name') = $1::text)"
        );
        assert_eq!(
            sql("amount = 1.5"),
            "(crust_num(r.values->'amount') = $1::numeric)"
        );
        assert_eq!(
            sql("active = true"),
            "(crust_bool(r.values->'active') = $1::boolean)"
        );
        assert_eq!(sql("active"), "crust_bool(r.values->'active')");
        assert_eq!(
            sql("closedAt >= '2019-05-01T00:00:00Z'"),
            "(crust_ts(r.values->'closedAt') >= $1::timestamptz)"
        );
        assert_eq!(
            sql("accountId = 42"),
            "(crust_id(r.values->'accountId') = $1::bigint)"
        );
        assert_eq!(
            sql("accountId = '42'"),
            "(crust_id(r.values->'accountId') = $1::bigint)"
        );
        assert_eq!(sql("recordID = 5"), "(r.id = $1::bigint)");
        assert_eq!(sql("ID = 5"), "(r.id = $1::bigint)");
        assert_eq!(sql("userId = 5"), "(r.user_id = $1::bigint)");
        assert_eq!(sql("user_id = 5"), "(r.user_id = $1::bigint)");
        assert_eq!(
            sql("createdAt > '2020-01-01'"),
            "(r.created_at > $1::timestamptz)"
        );
        assert_eq!(sql("created_at IS NULL"), "(r.created_at IS NULL)");
        assert_eq!(sql("UPDATEDAT IS NOT NULL"), "(r.updated_at IS NOT NULL)");
        // Case-insensitive fallback when unique; exact match otherwise.
        assert_eq!(
            sql("email = 'a'"),
            "(crust_text(r.values->'Email') = $1::text)"
        );
        assert_eq!(
            sql("`dup` = 'a'"),
            "(crust_text(r.values->'dup') = $1::text)"
        );
        assert_eq!(sql("DUP = 'a'"), "(crust_text(r.values->'DUP') = $1::text)");
        assert_eq!(ferr("Dup = 'a'"), "unknown field \"Dup\" at column 1");
    }

    #[test]
    fn year_rule_for_dates() {
        let (s, p) = filter("DATE(closedAt) > 2010");
        assert_eq!(
            s,
            "(extract(year from (crust_ts(r.values->'closedAt'))::date) > $1::numeric)"
        );
        assert_eq!(p, strs(&["2010"]));
        assert_eq!(
            sql("2010 < closedAt"),
            "($1::numeric < extract(year from crust_ts(r.values->'closedAt')))"
        );
        assert_eq!(
            sql("DATE(foo) BETWEEN 2010 AND 2012"),
            "(extract(year from (crust_ts(r.values->'foo'))::date) BETWEEN $1::numeric AND $2::numeric)"
        );
        assert_eq!(
            sql("closedAt IN (2019, 2020)"),
            "(extract(year from crust_ts(r.values->'closedAt')) IN ($1::numeric, $2::numeric))"
        );
        assert_eq!(
            sql("DATE(foo) = '2019-05-01'"),
            "((crust_ts(r.values->'foo'))::date = $1::date)"
        );
        assert_eq!(
            ferr("closedAt > 2010.5"),
            "cannot compare Timestamp with Number at column 10"
        );
    }

    #[test]
    fn multi_value_membership() {
        let (s, p) = filter("'vip' IN tags");
        assert_eq!(s, "((r.values->'tags') @> jsonb_build_array($1::text))");
        assert_eq!(p, strs(&["vip"]));
        assert_eq!(
            sql("'vip' NOT IN tags"),
            "(NOT ((r.values->'tags') @> jsonb_build_array($1::text)))"
        );
        assert_eq!(
            sql("3 IN scores"),
            "((r.values->'scores') @> jsonb_build_array($1::numeric))"
        );
        assert_eq!(
            sql("42 IN owners"),
            "((r.values->'owners') @> jsonb_build_array(($1::bigint)::text))"
        );
        assert_eq!(
            sql("'2019-05-01T00:00:00Z' IN dates"),
            "((r.values->'dates') @> jsonb_build_array(extract(epoch from $1::timestamptz)::bigint))"
        );
        assert_eq!(
            sql("true IN flags"),
            "((r.values->'flags') @> jsonb_build_array($1::boolean))"
        );
        assert_eq!(
            sql("name IN tags"),
            "((r.values->'tags') @> jsonb_build_array(crust_text(r.values->'name')))"
        );
        assert_eq!(
            ferr("tags = 'vip'"),
            "field \"tags\" holds several values; use 'x' IN tags at column 1"
        );
        assert_eq!(
            ferr("'x' IN status"),
            "field \"status\" holds a single value; use = or IN (...) at column 8"
        );
        assert_eq!(
            ferr("5 IN tags"),
            "cannot compare Text with Number at column 3"
        );
        assert_eq!(
            ferr("'x' IN owners"),
            "invalid ID, expected a whole number at column 1"
        );
    }

    #[test]
    fn operators() {
        assert_eq!(
            sql("amount != 1"),
            "(crust_num(r.values->'amount') <> $1::numeric)"
        );
        assert_eq!(
            sql("amount <> 1"),
            "(crust_num(r.values->'amount') <> $1::numeric)"
        );
        assert_eq!(
            sql("amount <= 1"),
            "(crust_num(r.values->'amount') <= $1::numeric)"
        );
        assert_eq!(
            sql("amount < -1"),
            "(crust_num(r.values->'amount') < $1::numeric)"
        );
        assert_eq!(filter("amount < -1").1, strs(&["-1"]));
        assert_eq!(filter("amount < - -1").1, strs(&["1"]));
        assert_eq!(
            sql("amount + money * 2 > 10"),
            "((crust_num(r.values->'amount') + (crust_num(r.values->'money') * $1::numeric)) > $2::numeric)"
        );
        assert_eq!(
            sql("amount / money - 1 = 0"),
            "(((crust_num(r.values->'amount') / NULLIF(crust_num(r.values->'money'), 0)) - $1::numeric) = $2::numeric)"
        );
        assert_eq!(
            sql("-amount < 0"),
            "((-crust_num(r.values->'amount')) < $1::numeric)"
        );
        assert_eq!(sql("NOT active"), "(NOT crust_bool(r.values->'active'))");
        assert_eq!(
            sql("name LIKE 'a%'"),
            "(crust_text(r.values->'name') ILIKE $1::text)"
        );
        assert_eq!(
            sql("name NOT LIKE 'a%'"),
            "(crust_text(r.values->'name') NOT ILIKE $1::text)"
        );
        assert_eq!(
            sql("status IN ('a', 'b')"),
            "(crust_text(r.values->'status') IN ($1::text, $2::text))"
        );
        assert_eq!(
            sql("status NOT IN ('a')"),
            "(crust_text(r.values->'status') NOT IN ($1::text))"
        );
        assert_eq!(
            sql("amount NOT BETWEEN 1 AND 2"),
            "(crust_num(r.values->'amount') NOT BETWEEN $1::numeric AND $2::numeric)"
        );
        assert_eq!(
            sql("amount = NULL"),
            "(crust_num(r.values->'amount') = NULL::numeric)"
        );
        assert_eq!(
            sql("closedAt > NOW() - INTERVAL 30 DAY"),
            "(crust_ts(r.values->'closedAt') > (now() - $1::interval))"
        );
        assert_eq!(
            filter("closedAt > NOW() - INTERVAL 30 DAY").1,
            strs(&["30 days"])
        );
        assert_eq!(
            sql("'2019-01-01' + INTERVAL 1 QUARTER < closedAt"),
            "(($1::timestamptz + $2::interval) < crust_ts(r.values->'closedAt'))"
        );
        assert_eq!(
            filter("'2019-01-01' + INTERVAL 1 QUARTER < closedAt").1,
            strs(&["2019-01-01", "3 months"])
        );
        assert_eq!(
            sql("INTERVAL 1 week + DATE(foo) < now()"),
            "(($1::interval + ((crust_ts(r.values->'foo'))::date)::timestamptz) < now())"
        );
        assert_eq!(sql("true"), "$1::boolean");
        assert_eq!(sql("1 = 1"), "($1::numeric = $2::numeric)");
    }

    #[test]
    fn functions() {
        assert_eq!(
            sql("YEAR(closedAt) = 2019"),
            "(extract(year from crust_ts(r.values->'closedAt'))::int = $1::numeric)"
        );
        assert_eq!(
            sql("QUARTER(foo) = 1"),
            "(extract(quarter from crust_ts(r.values->'foo'))::int = $1::numeric)"
        );
        assert_eq!(
            sql("MONTH(foo) = 1"),
            "(extract(month from crust_ts(r.values->'foo'))::int = $1::numeric)"
        );
        assert_eq!(
            sql("DAY(DATE(foo)) = 1"),
            "(extract(day from (crust_ts(r.values->'foo'))::date)::int = $1::numeric)"
        );
        let (s, p) = filter("DATE_FORMAT(closedAt, '%Y-%m') = '2019-05'");
        assert_eq!(
            s,
            "(to_char(crust_ts(r.values->'closedAt'), $1::text) = $2::text)"
        );
        assert_eq!(p, strs(&["YYYY\"-\"MM", "2019-05"]));
        let (s, p) = filter("CONCAT(name, '-', amount) = 'x'");
        assert_eq!(
            s,
            "(concat(crust_text(r.values->'name'), $1::text, (crust_num(r.values->'amount'))::text) = $2::text)"
        );
        assert_eq!(p, strs(&["-", "x"]));
        assert_eq!(
            sql("DATE_ADD(closedAt, INTERVAL 31 DAY) < NOW()"),
            "((crust_ts(r.values->'closedAt') + $1::interval) < now())"
        );
        assert_eq!(
            sql("DATE_SUB(DATE(closedAt), INTERVAL 2 HOUR) < NOW()"),
            "((((crust_ts(r.values->'closedAt'))::date)::timestamptz - $1::interval) < now())"
        );
        assert_eq!(
            sql("LOWER(name) = 'a'"),
            "(lower(crust_text(r.values->'name')) = $1::text)"
        );
        assert_eq!(
            sql("UPPER(name) = 'A'"),
            "(upper(crust_text(r.values->'name')) = $1::text)"
        );
        assert_eq!(
            sql("COALESCE(amount, money, 0) > 1"),
            "(coalesce(crust_num(r.values->'amount'), crust_num(r.values->'money'), $1::numeric) > $2::numeric)"
        );
        assert_eq!(
            sql("DATE('2019-01-01 10:00') = '2019-01-01'"),
            "(($1::timestamptz)::date = $2::date)"
        );
    }

    #[test]
    fn date_format_translation() {
        let t = |f: &str| mysql_format_to_pg(f);
        assert_eq!(
            t("%Y-%m-%d %H:%i:%s").unwrap(),
            "YYYY\"-\"MM\"-\"DD\" \"HH24\":\"MI\":\"SS"
        );
        assert_eq!(
            t("%y%c%e%h%M%b%W%a%j%p").unwrap(),
            "YY\"\"FMMM\"\"FMDD\"\"HH12\"\"FMMonth\"\"Mon\"\"FMDay\"\"Dy\"\"DDD\"\"AM"
        );
        assert_eq!(t("Week 100%%").unwrap(), "\"Week 100%\"");
        assert_eq!(t("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
        assert_eq!(t("").unwrap(), "");
        assert_eq!(t("%Q").unwrap_err(), "unknown DATE_FORMAT specifier %Q");
        assert_eq!(
            t("%").unwrap_err(),
            "DATE_FORMAT pattern ends with a lone %"
        );
        assert_eq!(
            ferr("DATE_FORMAT(foo, '%x') = 'a'"),
            "unknown DATE_FORMAT specifier %x at column 18"
        );
        assert_eq!(
            ferr("DATE_FORMAT(foo, name) = 'a'"),
            "DATE_FORMAT needs a string literal as its format at column 18"
        );
    }

    #[test]
    fn type_errors() {
        assert_eq!(
            ferr("amount = 'x'"),
            "cannot compare Number with Text at column 8"
        );
        assert_eq!(
            ferr("status > 5"),
            "cannot compare Text with Number at column 8"
        );
        assert_eq!(
            ferr("'x' = amount"),
            "cannot compare Number with Text at column 5"
        );
        assert_eq!(
            ferr("amount = status"),
            "cannot compare Number with Text at column 8"
        );
        assert_eq!(
            ferr("amount = active"),
            "cannot compare Number with Bool at column 8"
        );
        assert_eq!(ferr("amout > 1"), "unknown field \"amout\" at column 1");
        assert_eq!(
            ferr("x = 1 AND amout > 1"),
            "unknown field \"x\" at column 1"
        );
        assert_eq!(
            ferr("amount LIKE 'a'"),
            "LIKE expects Text but got Number at column 8"
        );
        assert_eq!(
            ferr("NOT amount"),
            "NOT expects Bool but got Number at column 1"
        );
        assert_eq!(
            ferr("amount AND active"),
            "AND expects Bool but got Number at column 1"
        );
        assert_eq!(
            ferr("status + 1 = 2"),
            "cannot apply + to Text and Number at column 8"
        );
        assert_eq!(
            ferr("-status = 'a'"),
            "unary minus expects Number but got Text at column 1"
        );
        assert_eq!(
            ferr("closedAt > 'yesterday'"),
            "invalid date-time, expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ at column 12"
        );
        assert_eq!(
            ferr("closedAt > '2019-02-29'"),
            "invalid date-time, expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ at column 12"
        );
        assert_eq!(
            ferr("DATE(foo) > 'x'"),
            "invalid date, expected YYYY-MM-DD at column 13"
        );
        assert_eq!(
            ferr("recordID = 'abc'"),
            "invalid ID, expected a whole number at column 12"
        );
        assert_eq!(
            ferr("recordID = 1.5"),
            "invalid ID, expected a whole number at column 12"
        );
        assert_eq!(
            ferr("DATE(amount) = 1"),
            "DATE expects Timestamp but got Number at column 1"
        );
        assert_eq!(
            ferr("LOWER(amount) = 'a'"),
            "LOWER expects Text but got Number at column 1"
        );
        assert_eq!(
            ferr("COALESCE(amount, name) = 1"),
            "cannot compare Number with Text at column 1"
        );
        assert_eq!(
            ferr("DATE_ADD(foo, 3) > now()"),
            "DATE_ADD expects INTERVAL n UNIT as its second argument at column 15"
        );
        assert_eq!(
            ferr("amount"),
            "the filter must be a condition, not a Number at column 1"
        );
        assert_eq!(
            ferr("'x'"),
            "the filter must be a condition, not a Text at column 1"
        );
        assert_eq!(
            ferr("`bad-name` = 1"),
            "invalid quoted identifier at column 1"
        );
        assert_eq!(
            ferr("SLEEP(1)"),
            "function SLEEP is not allowed at column 1"
        );
        assert_eq!(
            ferr("SUM(amount) > 1"),
            "aggregate SUM is only allowed in metrics at column 1"
        );
    }

    #[test]
    fn unsafe_schema_names_are_refused() {
        let s = Schema {
            fields: vec![
                FieldSpec {
                    name: "x') OR 1=1 --".into(),
                    ty: FieldType::Text,
                    multi: false,
                },
                FieldSpec {
                    name: "_x".into(),
                    ty: FieldType::Text,
                    multi: false,
                },
            ],
        };
        let mut p = Params::new();
        let e = compile_filter("_x = 'a'", &s, &mut p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field \"_x\" has a name that cannot be queried at column 1"
        );
        assert!(is_safe_field_name("closedAt"));
        assert!(!is_safe_field_name("x'y"));
        assert!(!is_safe_field_name(""));
    }

    #[test]
    fn hostile_literals_only_reach_params() {
        let evil = "'; DROP TABLE records; --";
        let src = format!(
            "status = '{}' OR name LIKE '{}'",
            evil.replace('\'', "''"),
            evil.replace('\'', "''")
        );
        let (s, p) = filter(&src);
        assert!(!s.contains("DROP"), "{s}");
        assert_eq!(p, vec![evil.to_string(), evil.to_string()]);
        let r = compile_report(
            1,
            &schema(),
            "SUM(amount) AS 'x; DROP TABLE records'",
            "CONCAT(status, '\"); DROP')",
            &src,
        )
        .unwrap();
        assert!(!r.sql.contains("DROP"), "{}", r.sql);
        assert_eq!(r.columns[1].key, "x; DROP TABLE records");
    }

    #[test]
    fn timestamp_shapes() {
        for ok in [
            "2019-05-01",
            "2019-05-01T00:00:00Z",
            "2019-05-01 10:20",
            "2019-05-01T10:20:30.123456",
            "2019-05-01T10:20:30+02:00",
            "2019-05-01T10:20:30-0530",
            "2020-02-29T23:59:59z",
        ] {
            assert!(is_valid_timestamp(ok), "{ok}");
        }
        for bad in [
            "2019-5-1",
            "2019-13-01",
            "2019-02-29",
            "0000-01-01",
            "2019-05-01T24:00",
            "2019-05-01T10:60",
            "2019-05-01T10:20:30.",
            "2019-05-01T10:20:30.1234567",
            "2019-05-01T10:20:30ZZ",
            "2019-05-01T10:20:30+2",
            "2019-05-01x",
            "２０19-05-01",
            "",
        ] {
            assert!(!is_valid_timestamp(bad), "{bad}");
        }
    }

    #[test]
    fn sorts() {
        let s = schema();
        assert_eq!(compile_sort("", &s).unwrap(), "r.id DESC");
        assert_eq!(compile_sort("  ", &s).unwrap(), "r.id DESC");
        assert_eq!(
            compile_sort("amount DESC, name", &s).unwrap(),
            "crust_num(r.values->'amount') DESC, crust_text(r.values->'name') ASC, r.id ASC"
        );
        assert_eq!(compile_sort("id asc", &s).unwrap(), "r.id ASC");
        assert_eq!(
            compile_sort("DATE(closedAt) DESC", &s).unwrap(),
            "(crust_ts(r.values->'closedAt'))::date DESC, r.id DESC"
        );
        let err = |src: &str| compile_sort(src, &s).unwrap_err().to_string();
        assert_eq!(
            err("amount + 1"),
            "literals are not allowed in a sort at column 10"
        );
        assert_eq!(
            err("DATE_FORMAT(foo, '%Y')"),
            "literals are not allowed in a sort at column 18"
        );
        assert_eq!(err("amout"), "unknown field \"amout\" at column 1");
        assert_eq!(
            err("tags"),
            "field \"tags\" holds several values; use 'x' IN tags at column 1"
        );
        assert_eq!(err("amount sideways"), "unexpected 'sideways' at column 8");
    }

    #[test]
    fn report_seed_example() {
        let r = compile_report(
            7,
            &schema(),
            "COUNT(*) AS count, SUM(money)",
            "DATE(foo), status",
            "DATE(foo) > 2010",
        )
        .unwrap();
        assert_eq!(
            r.sql,
            "SELECT count(*)::float8 AS c0, (sum(crust_num(r.values->'money')))::float8 AS c1, \
             to_char((crust_ts(r.values->'foo'))::date, 'YYYY-MM-DD') AS c2, \
             (crust_text(r.values->'status'))::text AS c3 \
             FROM records r WHERE r.module_id = 7 AND r.deleted_at IS NULL \
             AND ((extract(year from (crust_ts(r.values->'foo'))::date) > $1::numeric)) \
             GROUP BY 3, 4 ORDER BY 3, 4"
        );
        assert_eq!(r.params, strs(&["2010"]));
        let keys: Vec<(&str, bool)> = r
            .columns
            .iter()
            .map(|c| (c.key.as_str(), c.is_metric))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("count", true),
                ("metric_2", true),
                ("dimension_1", false),
                ("dimension_2", false)
            ]
        );
    }

    #[test]
    fn report_filter_or_cannot_escape() {
        let r = compile_report(1, &schema(), "", "", "amount = 1 OR money = 2").unwrap();
        assert_eq!(
            r.sql,
            "SELECT count(*)::float8 AS c0 FROM records r WHERE r.module_id = 1 AND r.deleted_at IS NULL \
             AND (((crust_num(r.values->'amount') = $1::numeric) OR (crust_num(r.values->'money') = $2::numeric)))"
        );
        let r = compile_report(1, &schema(), "", "", "").unwrap();
        assert_eq!(
            r.sql,
            "SELECT count(*)::float8 AS c0 FROM records r WHERE r.module_id = 1 AND r.deleted_at IS NULL"
        );
        assert_eq!(r.params, strs(&[]));
        assert_eq!(
            r.columns,
            vec![ReportColumn {
                key: "count".into(),
                is_metric: true
            }]
        );
    }

    #[test]
    fn report_metrics_and_dimensions() {
        let r = compile_report(
            1,
            &schema(),
            "AVG(amount) AS avg, STD(amount), MIN(closedAt), MAX(amount) / COUNT(status), COUNT(*)",
            "createdAt AS created, DATE_FORMAT(foo, '%Y') AS 'year', active, YEAR(foo)",
            "",
        )
        .unwrap();
        assert_eq!(
            r.sql,
            "SELECT count(*)::float8 AS c0, (avg(crust_num(r.values->'amount')))::float8 AS c1, \
             (stddev_pop(crust_num(r.values->'amount')))::float8 AS c2, \
             (min(extract(epoch from crust_ts(r.values->'closedAt'))))::float8 AS c3, \
             ((max(crust_num(r.values->'amount')) / NULLIF(count(crust_text(r.values->'status')), 0)))::float8 AS c4, \
             (count(*))::float8 AS c5, \
             to_char((r.created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS c6, \
             (to_char(crust_ts(r.values->'foo'), $1::text))::text AS c7, \
             (crust_bool(r.values->'active'))::text AS c8, \
             (extract(year from crust_ts(r.values->'foo'))::int)::text AS c9 \
             FROM records r WHERE r.module_id = 1 AND r.deleted_at IS NULL \
             GROUP BY 7, 8, 9, 10 ORDER BY 7, 8, 9, 10"
        );
        let keys: Vec<&str> = r.columns.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "count",
                "avg",
                "metric_2",
                "metric_3",
                "metric_4",
                "metric_5",
                "created",
                "year",
                "dimension_3",
                "dimension_4"
            ]
        );
        assert_eq!(r.params, strs(&["YYYY"]));
    }

    #[test]
    fn report_errors() {
        let s = schema();
        let err =
            |m: &str, d: &str, f: &str| compile_report(1, &s, m, d, f).unwrap_err().to_string();
        assert_eq!(
            err("amount", "", ""),
            "metrics: field \"amount\" must be inside an aggregate in a metric at column 1"
        );
        assert_eq!(
            err("SUM(status)", "", ""),
            "metrics: SUM expects Number but got Text at column 1"
        );
        assert_eq!(
            err("SUM(COUNT(*))", "", ""),
            "metrics: aggregates cannot be nested at column 5"
        );
        assert_eq!(
            err("COUNT(status) = 1", "", ""),
            "metrics: a metric must be a number, not a Bool at column 15"
        );
        assert_eq!(
            err("SUM(amount) AS count", "", ""),
            "metrics: duplicate column name \"count\" at column 1"
        );
        assert_eq!(
            err("SLEEP(1)", "", ""),
            "metrics: function SLEEP is not allowed at column 1"
        );
        assert_eq!(
            err("", "COUNT(*)", ""),
            "dimensions: aggregate COUNT is only allowed in metrics at column 1"
        );
        assert_eq!(
            err("", "amout", ""),
            "dimensions: unknown field \"amout\" at column 1"
        );
        assert_eq!(
            err("", "status AS s, name AS s", ""),
            "dimensions: duplicate column name \"s\" at column 14"
        );
        assert_eq!(
            err("", "tags", ""),
            "dimensions: field \"tags\" holds several values; use 'x' IN tags at column 1"
        );
        assert_eq!(
            err("", "", "amount = 'x'"),
            "filter: cannot compare Number with Text at column 8"
        );
        assert_eq!(
            err("", "", "COUNT(*) > 1"),
            "filter: aggregate COUNT is only allowed in metrics at column 1"
        );
        assert_eq!(
            err("", "", &"a".repeat(5000)),
            "filter: input is too long (max 4096 characters)"
        );
    }
}

#[cfg(test)]
mod job_tests {
    use super::*;

    fn job(src: &str) -> (String, Vec<String>) {
        let mut params = Params::new();
        let sql = compile_job_filter(src, &mut params).unwrap().unwrap();
        (sql, params.values)
    }

    #[test]
    fn job_columns_compile_to_the_jobs_table() {
        let (sql, values) = job("status = 'error' AND workflowID = 3 AND attempt > 1");
        assert_eq!(
            sql,
            "((j.status = $1::text) AND (j.workflow_id = $2::bigint) AND (j.attempt > $3::numeric))"
        );
        assert_eq!(values, ["error", "3", "1"]);
        let (sql, _) = job("finishedAt >= '2026-01-01' AND parentJobID IS NULL AND key = 'k'");
        assert!(sql.contains("j.finished_at >= $1::timestamptz"), "{sql}");
        assert!(sql.contains("j.parent_job_id IS NULL"), "{sql}");
        assert!(sql.contains("j.idempotency_key = $2::text"), "{sql}");
    }

    #[test]
    fn parameter_equality_is_containment_so_the_gin_index_serves_it() {
        let (sql, values) = job("parameters.customer = 'x'");
        assert_eq!(
            sql,
            "(j.parameters @> jsonb_build_object('customer', $1::text))"
        );
        assert_eq!(values, ["x"]);
        let (sql, _) = job("7 = parameters.n");
        assert_eq!(
            sql,
            "(j.parameters @> jsonb_build_object('n', $1::numeric))"
        );
        let (sql, _) = job("parameters.n > 5");
        assert_eq!(sql, "((j.parameters->'n') > to_jsonb($1::numeric))");
        let (sql, _) = job("parameters.s IN ('a', 'b')");
        assert_eq!(
            sql,
            "((j.parameters->'s') IN (to_jsonb($1::text), to_jsonb($2::text)))"
        );
    }

    #[test]
    fn unknown_job_fields_name_the_column() {
        let mut params = Params::new();
        let err = compile_job_filter("stauts = 'error'", &mut params).unwrap_err();
        assert_eq!(err.to_string(), "unknown field \"stauts\" at column 1");
        let err = compile_job_filter("status = 'x' AND values.a = 1", &mut params).unwrap_err();
        assert_eq!(err.to_string(), "unknown field \"values.a\" at column 18");
        // Record columns are not job columns.
        assert!(compile_job_filter("updatedAt > '2020-01-01'", &mut params).is_err());
    }

    #[test]
    fn job_sorts_break_ties_by_job_id() {
        assert_eq!(compile_job_sort("").unwrap(), "j.id DESC");
        assert_eq!(
            compile_job_sort("createdAt ASC").unwrap(),
            "j.created_at ASC, j.id ASC"
        );
        assert_eq!(
            compile_job_sort("parameters.customer DESC").unwrap(),
            "(j.parameters->'customer') DESC, j.id DESC"
        );
        assert!(compile_job_sort("nope").is_err());
    }
}
