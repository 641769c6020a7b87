//! AST of the query language (expressions, sort items, select items) and its error type.

use std::fmt;

/// A query error: a message plus the 1-based character column it refers to, if any.
///
/// Displays as `expected ')' at column 17`, or just the message when there is no column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", fmt_column(.column))]
pub struct QueryError {
    pub message: String,
    pub column: Option<usize>,
}

fn fmt_column(column: &Option<usize>) -> String {
    match column {
        Some(c) => format!(" at column {c}"),
        None => String::new(),
    }
}

impl QueryError {
    pub fn new(message: impl Into<String>, column: Option<usize>) -> Self {
        QueryError {
            message: message.into(),
            column,
        }
    }

    pub fn at(message: impl Into<String>, column: usize) -> Self {
        QueryError::new(message, Some(column))
    }
}

/// An expression with the 1-based column of its defining token (the operator for
/// operations, the name for calls and fields, the first character for literals).
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub col: usize,
}

impl Expr {
    pub fn new(kind: ExprKind, col: usize) -> Self {
        Expr { kind, col }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    pub fn sql(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalUnit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl IntervalUnit {
    pub fn from_keyword(word: &str) -> Option<Self> {
        Some(match word.to_ascii_uppercase().as_str() {
            "SECOND" => IntervalUnit::Second,
            "MINUTE" => IntervalUnit::Minute,
            "HOUR" => IntervalUnit::Hour,
            "DAY" => IntervalUnit::Day,
            "WEEK" => IntervalUnit::Week,
            "MONTH" => IntervalUnit::Month,
            "QUARTER" => IntervalUnit::Quarter,
            "YEAR" => IntervalUnit::Year,
            _ => return None,
        })
    }

    pub fn keyword(self) -> &'static str {
        match self {
            IntervalUnit::Second => "SECOND",
            IntervalUnit::Minute => "MINUTE",
            IntervalUnit::Hour => "HOUR",
            IntervalUnit::Day => "DAY",
            IntervalUnit::Week => "WEEK",
            IntervalUnit::Month => "MONTH",
            IntervalUnit::Quarter => "QUARTER",
            IntervalUnit::Year => "YEAR",
        }
    }
}

/// The whitelisted functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Date,
    Year,
    Quarter,
    Month,
    Day,
    DateFormat,
    Concat,
    Now,
    DateAdd,
    DateSub,
    Lower,
    Upper,
    Coalesce,
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Std,
}

impl Func {
    /// Looks a function up by name, case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "DATE" => Func::Date,
            "YEAR" => Func::Year,
            "QUARTER" => Func::Quarter,
            "MONTH" => Func::Month,
            "DAY" => Func::Day,
            "DATE_FORMAT" => Func::DateFormat,
            "CONCAT" => Func::Concat,
            "NOW" => Func::Now,
            "DATE_ADD" => Func::DateAdd,
            "DATE_SUB" => Func::DateSub,
            "LOWER" => Func::Lower,
            "UPPER" => Func::Upper,
            "COALESCE" => Func::Coalesce,
            "COUNT" => Func::Count,
            "SUM" => Func::Sum,
            "MIN" => Func::Min,
            "MAX" => Func::Max,
            "AVG" => Func::Avg,
            "STD" => Func::Std,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Func::Date => "DATE",
            Func::Year => "YEAR",
            Func::Quarter => "QUARTER",
            Func::Month => "MONTH",
            Func::Day => "DAY",
            Func::DateFormat => "DATE_FORMAT",
            Func::Concat => "CONCAT",
            Func::Now => "NOW",
            Func::DateAdd => "DATE_ADD",
            Func::DateSub => "DATE_SUB",
            Func::Lower => "LOWER",
            Func::Upper => "UPPER",
            Func::Coalesce => "COALESCE",
            Func::Count => "COUNT",
            Func::Sum => "SUM",
            Func::Min => "MIN",
            Func::Max => "MAX",
            Func::Avg => "AVG",
            Func::Std => "STD",
        }
    }

    pub fn is_aggregate(self) -> bool {
        matches!(
            self,
            Func::Count | Func::Sum | Func::Min | Func::Max | Func::Avg | Func::Std
        )
    }

    /// (minimum, maximum) number of arguments; `None` means unbounded.
    pub fn arity(self) -> (usize, Option<usize>) {
        match self {
            Func::Now => (0, Some(0)),
            Func::DateFormat | Func::DateAdd | Func::DateSub => (2, Some(2)),
            Func::Concat | Func::Coalesce => (1, None),
            _ => (1, Some(1)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Null,
    Bool(bool),
    /// Integer or decimal literal as written (digits, optional `.digits`, optional leading `-`).
    /// Integer literals are guaranteed to fit in an `i64`.
    Number(String),
    Str(String),
    Interval {
        value: i64,
        unit: IntervalUnit,
    },
    /// A field or system column, as written (without quotes).
    Field(String),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    /// `a AND b AND c` (a chain; parentheses in the source nest explicitly).
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Compare {
        op: CmpOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// A left-associative chain `first op1 e1 op2 e2 …` of one precedence level;
    /// each step keeps the column of its operator.
    Arith {
        first: Box<Expr>,
        rest: Vec<(ArithOp, usize, Expr)>,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    /// `x IN field` — membership in a multi-value field.
    InField {
        expr: Box<Expr>,
        field: String,
        field_col: usize,
        negated: bool,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    /// A whitelisted function call; `COUNT(*)` is `Count` with no arguments.
    Call {
        func: Func,
        args: Vec<Expr>,
    },
}

/// One `expr [ASC|DESC]` of a sort.
#[derive(Debug, Clone, PartialEq)]
pub struct SortItem {
    pub expr: Expr,
    pub descending: bool,
}

/// One `expr [AS alias]` of a metrics or dimensions list.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectItem {
    pub expr: Expr,
    pub alias: Option<String>,
}

fn quote_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    write!(f, "'{}'", s.replace('\'', "''"))
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[Expr], sep: &str) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

/// Canonical, fully parenthesised rendering (used in tests and messages); it parses
/// back to the same tree.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not = |n: bool| if n { "NOT " } else { "" };
        match &self.kind {
            ExprKind::Null => f.write_str("NULL"),
            ExprKind::Bool(b) => f.write_str(if *b { "TRUE" } else { "FALSE" }),
            ExprKind::Number(n) => f.write_str(n),
            ExprKind::Str(s) => quote_str(f, s),
            ExprKind::Interval { value, unit } => {
                write!(f, "INTERVAL {value} {}", unit.keyword())
            }
            ExprKind::Field(name) => write!(f, "`{name}`"),
            ExprKind::Not(e) => write!(f, "(NOT {e})"),
            ExprKind::Neg(e) => write!(f, "(-{e})"),
            ExprKind::And(items) => {
                f.write_str("(")?;
                write_list(f, items, " AND ")?;
                f.write_str(")")
            }
            ExprKind::Or(items) => {
                f.write_str("(")?;
                write_list(f, items, " OR ")?;
                f.write_str(")")
            }
            ExprKind::Compare { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.sql()),
            ExprKind::Arith { first, rest } => {
                for _ in rest {
                    f.write_str("(")?;
                }
                write!(f, "{first}")?;
                for (op, _, e) in rest {
                    write!(f, " {} {e})", op.sql())?;
                }
                Ok(())
            }
            ExprKind::Like {
                expr,
                pattern,
                negated,
            } => write!(f, "({expr} {}LIKE {pattern})", not(*negated)),
            ExprKind::InList {
                expr,
                list,
                negated,
            } => {
                write!(f, "({expr} {}IN (", not(*negated))?;
                write_list(f, list, ", ")?;
                f.write_str("))")
            }
            ExprKind::InField {
                expr,
                field,
                negated,
                ..
            } => write!(f, "({expr} {}IN `{field}`)", not(*negated)),
            ExprKind::IsNull { expr, negated } => {
                write!(f, "({expr} IS {}NULL)", not(*negated))
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => write!(f, "({expr} {}BETWEEN {low} AND {high})", not(*negated)),
            ExprKind::Call { func, args } => {
                write!(f, "{}(", func.name())?;
                if *func == Func::Count && args.is_empty() {
                    f.write_str("*")?;
                }
                write_list(f, args, ", ")?;
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_with_and_without_column() {
        assert_eq!(
            QueryError::at("expected ')'", 17).to_string(),
            "expected ')' at column 17"
        );
        assert_eq!(
            QueryError::new("unexpected end of input, expected an expression", None).to_string(),
            "unexpected end of input, expected an expression"
        );
    }

    #[test]
    fn function_lookup_is_case_insensitive() {
        assert_eq!(Func::from_name("date_format"), Some(Func::DateFormat));
        assert_eq!(Func::from_name("CoUnT"), Some(Func::Count));
        assert_eq!(Func::from_name("sleep"), None);
        assert!(Func::Std.is_aggregate());
        assert!(!Func::Lower.is_aggregate());
    }

    #[test]
    fn interval_units() {
        assert_eq!(
            IntervalUnit::from_keyword("quarter"),
            Some(IntervalUnit::Quarter)
        );
        assert_eq!(IntervalUnit::from_keyword("fortnight"), None);
    }

    #[test]
    fn display_escapes_strings() {
        let e = Expr::new(ExprKind::Str("it's".into()), 1);
        assert_eq!(e.to_string(), "'it''s'");
    }
}
