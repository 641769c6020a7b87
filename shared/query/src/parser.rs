//! Recursive-descent parser for filters, sorts and metric/dimension lists.
//!
//! Precedence, loosest first: OR < AND < NOT < comparison (=, <>, <, LIKE, IN, BETWEEN,
//! IS) < `+ -` < `* /` < unary minus. Nesting (parentheses, calls, IN lists, NOT, unary
//! minus) is limited to [`MAX_DEPTH`] levels, so the recursion — and every later pass over
//! the tree — is bounded; operator chains are kept flat (n-ary nodes).

use super::ast::{
    ArithOp, CmpOp, Expr, ExprKind, Func, IntervalUnit, QueryError, SelectItem, SortItem,
};
use super::lexer::{tokenize, Tok, Token};

/// Maximum nesting depth of parentheses, calls, NOT and unary minus.
pub const MAX_DEPTH: usize = 32;

/// Largest `n` accepted in `INTERVAL n UNIT`.
pub const MAX_INTERVAL: i64 = 1_000_000;

/// Most arguments of one function call: Postgres's own limit (`FUNC_MAX_ARGS`),
/// so `CONCAT` of 101 values is our 400, not its error.
pub const MAX_ARGS: usize = 100;

/// Most items of a sort or of a metrics or dimensions list (Postgres allows
/// 1 664 columns per query).
pub const MAX_ITEMS: usize = 100;

type Result<T> = std::result::Result<T, QueryError>;

/// Parses a filter; `None` when it is blank.
pub fn parse_filter(src: &str) -> Result<Option<Expr>> {
    let mut p = Parser::new(src, false)?;
    if p.at_end() {
        return Ok(None);
    }
    let e = p.expr()?;
    p.finish()?;
    Ok(Some(e))
}

/// Parses `expr [ASC|DESC], …`; empty for a blank sort.
pub fn parse_sort(src: &str) -> Result<Vec<SortItem>> {
    let mut p = Parser::new(src, false)?;
    let mut items = Vec::new();
    if p.at_end() {
        return Ok(items);
    }
    loop {
        let expr = p.expr()?;
        let descending = if p.eat_keyword("DESC") {
            true
        } else {
            p.eat_keyword("ASC");
            false
        };
        items.push(SortItem { expr, descending });
        if !p.eat(&Tok::Comma) {
            break;
        }
        p.check_items(items.len())?;
    }
    p.finish()?;
    Ok(items)
}

/// Parses a metrics or dimensions list, `expr [AS alias], …` (alias: identifier or
/// single-quoted string); empty when blank. Aggregates are accepted here; the compiler
/// rejects them in dimensions.
pub fn parse_select_list(src: &str) -> Result<Vec<SelectItem>> {
    let mut p = Parser::new(src, true)?;
    let mut items = Vec::new();
    if p.at_end() {
        return Ok(items);
    }
    loop {
        let expr = p.expr()?;
        let alias = if p.eat_keyword("AS") {
            match p.next() {
                Some(Token {
                    tok: Tok::Ident(s) | Tok::QuotedIdent(s) | Tok::Str(s),
                    ..
                }) => Some(s),
                Some(t) => {
                    return Err(QueryError::at(
                        format!("unexpected {}, expected an alias", t.tok.describe()),
                        t.col,
                    ))
                }
                None => {
                    return Err(QueryError::new(
                        "unexpected end of input, expected an alias",
                        None,
                    ))
                }
            }
        } else {
            None
        };
        items.push(SelectItem { expr, alias });
        if !p.eat(&Tok::Comma) {
            break;
        }
        p.check_items(items.len())?;
    }
    p.finish()?;
    Ok(items)
}

const KEYWORDS: &[&str] = &[
    "AND", "OR", "NOT", "LIKE", "IN", "IS", "NULL", "BETWEEN", "TRUE", "FALSE", "INTERVAL", "AS",
    "ASC", "DESC",
];

fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    allow_aggregates: bool,
}

impl Parser {
    fn new(src: &str, allow_aggregates: bool) -> Result<Self> {
        Ok(Parser {
            toks: tokenize(src)?,
            pos: 0,
            depth: 0,
            allow_aggregates,
        })
    }

    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn peek_at(&self, n: usize) -> Option<&Token> {
        self.toks.get(self.pos + n)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek().is_some_and(|t| &t.tok == tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn keyword_at(&self, n: usize, kw: &str) -> bool {
        matches!(self.peek_at(n), Some(Token { tok: Tok::Ident(s), .. }) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.keyword_at(0, kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Error for the current token (or end of input) not being `what`.
    fn expected(&self, what: &str) -> QueryError {
        match self.peek() {
            Some(t) => QueryError::at(format!("expected {what}"), t.col),
            None => QueryError::new(format!("unexpected end of input, expected {what}"), None),
        }
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<()> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn finish(&self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(QueryError::at(
                format!("unexpected {}", t.tok.describe()),
                t.col,
            )),
        }
    }

    fn enter(&mut self, col: usize) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::at("expressions are nested too deeply", col));
        }
        Ok(())
    }

    /// Refuses a next item after `count` when the list is full.
    fn check_items(&self, count: usize) -> Result<()> {
        if count < MAX_ITEMS {
            return Ok(());
        }
        let col = self.peek().map(|t| t.col);
        Err(QueryError::new(
            format!("at most {MAX_ITEMS} expressions are allowed"),
            col,
        ))
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn expr(&mut self) -> Result<Expr> {
        self.or()
    }

    fn or(&mut self) -> Result<Expr> {
        let first = self.and()?;
        let col = match self.peek() {
            Some(t) if self.keyword_at(0, "OR") => t.col,
            _ => return Ok(first),
        };
        let mut items = vec![first];
        while self.eat_keyword("OR") {
            items.push(self.and()?);
        }
        Ok(Expr::new(ExprKind::Or(items), col))
    }

    fn and(&mut self) -> Result<Expr> {
        let first = self.not()?;
        let col = match self.peek() {
            Some(t) if self.keyword_at(0, "AND") => t.col,
            _ => return Ok(first),
        };
        let mut items = vec![first];
        while self.eat_keyword("AND") {
            items.push(self.not()?);
        }
        Ok(Expr::new(ExprKind::And(items), col))
    }

    fn not(&mut self) -> Result<Expr> {
        if let Some(col) = self
            .peek()
            .map(|t| t.col)
            .filter(|_| self.keyword_at(0, "NOT"))
        {
            self.pos += 1;
            self.enter(col)?;
            let inner = self.not()?;
            self.leave();
            return Ok(Expr::new(ExprKind::Not(Box::new(inner)), col));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr> {
        let lhs = self.additive()?;
        let Some(t) = self.peek() else {
            return Ok(lhs);
        };
        let col = t.col;
        let op = match t.tok {
            Tok::Eq => Some(CmpOp::Eq),
            Tok::Ne => Some(CmpOp::Ne),
            Tok::Lt => Some(CmpOp::Lt),
            Tok::Le => Some(CmpOp::Le),
            Tok::Gt => Some(CmpOp::Gt),
            Tok::Ge => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.pos += 1;
            let rhs = self.additive()?;
            return Ok(Expr::new(
                ExprKind::Compare {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
                col,
            ));
        }
        if self.eat_keyword("IS") {
            let negated = self.eat_keyword("NOT");
            if !self.eat_keyword("NULL") {
                return Err(self.expected("NULL"));
            }
            return Ok(Expr::new(
                ExprKind::IsNull {
                    expr: Box::new(lhs),
                    negated,
                },
                col,
            ));
        }
        let negated = self.keyword_at(0, "NOT")
            && (self.keyword_at(1, "LIKE")
                || self.keyword_at(1, "IN")
                || self.keyword_at(1, "BETWEEN"));
        if negated {
            self.pos += 1;
        }
        if self.eat_keyword("LIKE") {
            let pattern = self.additive()?;
            return Ok(Expr::new(
                ExprKind::Like {
                    expr: Box::new(lhs),
                    pattern: Box::new(pattern),
                    negated,
                },
                col,
            ));
        }
        if self.eat_keyword("BETWEEN") {
            let low = self.additive()?;
            if !self.eat_keyword("AND") {
                return Err(self.expected("AND"));
            }
            let high = self.additive()?;
            return Ok(Expr::new(
                ExprKind::Between {
                    expr: Box::new(lhs),
                    low: Box::new(low),
                    high: Box::new(high),
                    negated,
                },
                col,
            ));
        }
        if self.eat_keyword("IN") {
            return self.in_rhs(lhs, negated, col);
        }
        Ok(lhs)
    }

    fn in_rhs(&mut self, lhs: Expr, negated: bool, col: usize) -> Result<Expr> {
        match self.peek().cloned() {
            Some(Token {
                tok: Tok::LParen,
                col: pcol,
            }) => {
                self.pos += 1;
                self.enter(pcol)?;
                let mut list = vec![self.expr()?];
                while self.eat(&Tok::Comma) {
                    list.push(self.expr()?);
                }
                self.expect(&Tok::RParen, "')'")?;
                self.leave();
                Ok(Expr::new(
                    ExprKind::InList {
                        expr: Box::new(lhs),
                        list,
                        negated,
                    },
                    col,
                ))
            }
            Some(Token {
                tok: Tok::QuotedIdent(name),
                col: fcol,
            }) => {
                self.pos += 1;
                Ok(in_field(lhs, name, fcol, negated, col))
            }
            Some(Token {
                tok: Tok::Ident(name),
                col: fcol,
            }) if !is_keyword(&name)
                && !matches!(
                    self.peek_at(1),
                    Some(Token {
                        tok: Tok::LParen,
                        ..
                    })
                ) =>
            {
                self.pos += 1;
                Ok(in_field(lhs, name, fcol, negated, col))
            }
            _ => Err(self.expected("'(' or a multi-value field after IN")),
        }
    }

    fn additive(&mut self) -> Result<Expr> {
        let first = self.multiplicative()?;
        let mut rest = Vec::new();
        while let Some(t) = self.peek() {
            let op = match t.tok {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => break,
            };
            let col = t.col;
            self.pos += 1;
            rest.push((op, col, self.multiplicative()?));
        }
        Ok(arith(first, rest))
    }

    fn multiplicative(&mut self) -> Result<Expr> {
        let first = self.unary()?;
        let mut rest = Vec::new();
        while let Some(t) = self.peek() {
            let op = match t.tok {
                Tok::Star => ArithOp::Mul,
                Tok::Slash => ArithOp::Div,
                _ => break,
            };
            let col = t.col;
            self.pos += 1;
            rest.push((op, col, self.unary()?));
        }
        Ok(arith(first, rest))
    }

    fn unary(&mut self) -> Result<Expr> {
        if let Some(Token {
            tok: Tok::Minus,
            col,
        }) = self.peek().cloned()
        {
            self.pos += 1;
            self.enter(col)?;
            let inner = self.unary()?;
            self.leave();
            // Fold `-<number>` into the literal so it binds as one parameter.
            if let ExprKind::Number(n) = &inner.kind {
                if !n.starts_with('-') {
                    return Ok(Expr::new(ExprKind::Number(format!("-{n}")), col));
                }
            }
            return Ok(Expr::new(ExprKind::Neg(Box::new(inner)), col));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr> {
        let Some(t) = self.next() else {
            return Err(QueryError::new(
                "unexpected end of input, expected an expression",
                None,
            ));
        };
        let col = t.col;
        let kind = match t.tok {
            Tok::Number(n) => ExprKind::Number(n),
            Tok::Str(s) => ExprKind::Str(s),
            Tok::QuotedIdent(name) => ExprKind::Field(name),
            Tok::LParen => {
                self.enter(col)?;
                let e = self.expr()?;
                self.expect(&Tok::RParen, "')'")?;
                self.leave();
                return Ok(e);
            }
            Tok::Ident(word) => {
                let upper = word.to_ascii_uppercase();
                match upper.as_str() {
                    "NULL" => ExprKind::Null,
                    "TRUE" => ExprKind::Bool(true),
                    "FALSE" => ExprKind::Bool(false),
                    "INTERVAL" => return self.interval(col),
                    _ if self.peek().is_some_and(|t| t.tok == Tok::LParen) => {
                        return self.call(&upper, col)
                    }
                    _ if is_keyword(&upper) => {
                        return Err(QueryError::at(
                            format!("unexpected '{word}', expected an expression"),
                            col,
                        ))
                    }
                    _ => ExprKind::Field(word),
                }
            }
            other => {
                return Err(QueryError::at(
                    format!("unexpected {}, expected an expression", other.describe()),
                    col,
                ))
            }
        };
        Ok(Expr::new(kind, col))
    }

    fn interval(&mut self, col: usize) -> Result<Expr> {
        let negative = self.eat(&Tok::Minus);
        let value = match self.next() {
            Some(Token {
                tok: Tok::Number(n),
                col: ncol,
            }) => match n.parse::<i64>() {
                Ok(v) if v <= MAX_INTERVAL => v,
                _ => {
                    return Err(QueryError::at(
                        format!("INTERVAL needs a whole number up to {MAX_INTERVAL}"),
                        ncol,
                    ))
                }
            },
            Some(t) => {
                return Err(QueryError::at(
                    "expected a whole number after INTERVAL",
                    t.col,
                ))
            }
            None => {
                return Err(QueryError::new(
                    "unexpected end of input, expected a whole number after INTERVAL",
                    None,
                ))
            }
        };
        let value = if negative { -value } else { value };
        let unit = match self.next() {
            Some(Token {
                tok: Tok::Ident(u),
                col: ucol,
            }) => IntervalUnit::from_keyword(&u).ok_or_else(|| {
                QueryError::at(
                    "expected an interval unit (SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER or YEAR)",
                    ucol,
                )
            })?,
            Some(t) => {
                return Err(QueryError::at(
                    "expected an interval unit (SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER or YEAR)",
                    t.col,
                ))
            }
            None => {
                return Err(QueryError::new(
                    "unexpected end of input, expected an interval unit",
                    None,
                ))
            }
        };
        Ok(Expr::new(ExprKind::Interval { value, unit }, col))
    }

    /// A call `NAME(args)`; the current token is the `(`.
    fn call(&mut self, upper: &str, col: usize) -> Result<Expr> {
        let Some(func) = Func::from_name(upper) else {
            return Err(QueryError::at(
                format!("function {upper} is not allowed"),
                col,
            ));
        };
        if func.is_aggregate() && !self.allow_aggregates {
            return Err(QueryError::at(
                format!("aggregate {} is only allowed in metrics", func.name()),
                col,
            ));
        }
        self.pos += 1; // '('
        self.enter(col)?;
        let mut args = Vec::new();
        if func == Func::Count && self.peek().is_some_and(|t| t.tok == Tok::Star) {
            self.pos += 1;
        } else if !self.eat(&Tok::RParen) {
            args.push(self.expr()?);
            while self.eat(&Tok::Comma) {
                if args.len() == MAX_ARGS {
                    return Err(QueryError::at(
                        format!(
                            "function {} takes at most {MAX_ARGS} arguments",
                            func.name()
                        ),
                        col,
                    ));
                }
                args.push(self.expr()?);
            }
            self.expect(&Tok::RParen, "')'")?;
            self.leave();
            check_arity(func, args.len(), col)?;
            return Ok(Expr::new(ExprKind::Call { func, args }, col));
        } else {
            self.leave();
            check_arity(func, 0, col)?;
            return Ok(Expr::new(ExprKind::Call { func, args }, col));
        }
        // COUNT(*)
        self.expect(&Tok::RParen, "')'")?;
        self.leave();
        Ok(Expr::new(ExprKind::Call { func, args }, col))
    }
}

fn check_arity(func: Func, n: usize, col: usize) -> Result<()> {
    let (min, max) = func.arity();
    let plural = |k: usize| if k == 1 { "argument" } else { "arguments" };
    let msg = match max {
        Some(max) if n > max || n < min => {
            if min == max {
                format!("function {} takes {min} {}", func.name(), plural(min))
            } else {
                format!("function {} takes {min} to {max} arguments", func.name())
            }
        }
        None if n < min => format!(
            "function {} takes at least {min} {}",
            func.name(),
            plural(min)
        ),
        _ => return Ok(()),
    };
    Err(QueryError::at(msg, col))
}

fn arith(first: Expr, rest: Vec<(ArithOp, usize, Expr)>) -> Expr {
    if rest.is_empty() {
        return first;
    }
    let col = rest[0].1;
    Expr::new(
        ExprKind::Arith {
            first: Box::new(first),
            rest,
        },
        col,
    )
}

fn in_field(lhs: Expr, field: String, field_col: usize, negated: bool, col: usize) -> Expr {
    Expr::new(
        ExprKind::InField {
            expr: Box::new(lhs),
            field,
            field_col,
            negated,
        },
        col,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> String {
        match parse_filter(src) {
            Ok(Some(e)) => e.to_string(),
            Ok(None) => "<none>".into(),
            Err(e) => panic!("{src}: {e}"),
        }
    }

    fn err(src: &str) -> String {
        match parse_filter(src) {
            Ok(e) => panic!("{src}: expected an error, got {e:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn blank_is_none() {
        assert_eq!(p(""), "<none>");
        assert_eq!(p("  \n\t "), "<none>");
    }

    #[test]
    fn precedence() {
        assert_eq!(
            p("a = 1 OR b = 2 AND c = 3"),
            "((`a` = 1) OR ((`b` = 2) AND (`c` = 3)))"
        );
        assert_eq!(p("NOT a = 1 AND b"), "((NOT (`a` = 1)) AND `b`)");
        assert_eq!(
            p("a + b * c - d / e"),
            "((`a` + (`b` * `c`)) - (`d` / `e`))"
        );
        assert_eq!(p("-a * b"), "((-`a`) * `b`)");
        assert_eq!(p("a = b + 1"), "(`a` = (`b` + 1))");
        assert_eq!(p("a OR b OR c"), "(`a` OR `b` OR `c`)");
        assert_eq!(p("a AND b AND NOT c"), "(`a` AND `b` AND (NOT `c`))");
    }

    #[test]
    fn parentheses_change_grouping() {
        assert_eq!(
            p("a=1 AND (b=2 OR c=3)"),
            "((`a` = 1) AND ((`b` = 2) OR (`c` = 3)))"
        );
        assert_eq!(
            p("(a=1 AND b=2) OR c=3"),
            "(((`a` = 1) AND (`b` = 2)) OR (`c` = 3))"
        );
        assert_eq!(p("(a + b) * c"), "((`a` + `b`) * `c`)");
        assert_eq!(p("((a))"), "`a`");
    }

    #[test]
    fn every_comparison_operator() {
        for (src, op) in [
            ("=", "="),
            ("!=", "<>"),
            ("<>", "<>"),
            ("<", "<"),
            ("<=", "<="),
            (">", ">"),
            (">=", ">="),
        ] {
            assert_eq!(p(&format!("a {src} 1")), format!("(`a` {op} 1)"));
        }
    }

    #[test]
    fn special_forms() {
        assert_eq!(p("a IN (1, 2, 3)"), "(`a` IN (1, 2, 3))");
        assert_eq!(p("a not in ('x')"), "(`a` NOT IN ('x'))");
        assert_eq!(p("'vip' IN tags"), "('vip' IN `tags`)");
        assert_eq!(p("'vip' NOT IN `tags`"), "('vip' NOT IN `tags`)");
        assert_eq!(
            p("a BETWEEN 1 AND 2 AND b"),
            "((`a` BETWEEN 1 AND 2) AND `b`)"
        );
        assert_eq!(
            p("a NOT BETWEEN 1 + 1 AND 5"),
            "(`a` NOT BETWEEN (1 + 1) AND 5)"
        );
        assert_eq!(p("a IS NULL"), "(`a` IS NULL)");
        assert_eq!(p("a is not null"), "(`a` IS NOT NULL)");
        assert_eq!(p("a LIKE 'x%'"), "(`a` LIKE 'x%')");
        assert_eq!(p("a NOT LIKE 'x%'"), "(`a` NOT LIKE 'x%')");
        assert_eq!(p("NOT a LIKE 'x'"), "(NOT (`a` LIKE 'x'))");
    }

    #[test]
    fn literals() {
        assert_eq!(p("a = 'it''s'"), "(`a` = 'it''s')");
        assert_eq!(p("a = 1.25"), "(`a` = 1.25)");
        assert_eq!(p("a = -5"), "(`a` = -5)");
        assert_eq!(p("a = - - 5"), "(`a` = (--5))");
        assert_eq!(
            p("a = TRUE OR b = false"),
            "((`a` = TRUE) OR (`b` = FALSE))"
        );
        assert_eq!(
            p("a IS NULL OR a = null"),
            "((`a` IS NULL) OR (`a` = NULL))"
        );
        assert_eq!(p("x > INTERVAL 3 day"), "(`x` > INTERVAL 3 DAY)");
        assert_eq!(p("x > interval -2 Quarter"), "(`x` > INTERVAL -2 QUARTER)");
        assert_eq!(p("`AND` = \"or\""), "(`AND` = `or`)");
    }

    #[test]
    fn every_function() {
        for (src, want) in [
            ("DATE(a)", "DATE(`a`)"),
            ("year(a)", "YEAR(`a`)"),
            ("Quarter(a)", "QUARTER(`a`)"),
            ("MONTH(a)", "MONTH(`a`)"),
            ("DAY(a)", "DAY(`a`)"),
            ("date_format(a, '%Y')", "DATE_FORMAT(`a`, '%Y')"),
            ("CONCAT(a, 'b', c)", "CONCAT(`a`, 'b', `c`)"),
            ("NOW()", "NOW()"),
            (
                "DATE_ADD(a, INTERVAL 1 DAY)",
                "DATE_ADD(`a`, INTERVAL 1 DAY)",
            ),
            (
                "DATE_SUB(a, INTERVAL 1 MONTH)",
                "DATE_SUB(`a`, INTERVAL 1 MONTH)",
            ),
            ("LOWER(a)", "LOWER(`a`)"),
            ("UPPER(a)", "UPPER(`a`)"),
            ("COALESCE(a, b)", "COALESCE(`a`, `b`)"),
        ] {
            assert_eq!(p(src), want, "{src}");
        }
        assert_eq!(p("now() > x"), "(NOW() > `x`)");
        assert_eq!(p("date = 1"), "(`date` = 1)");
    }

    #[test]
    fn aggregates_in_select_lists() {
        let items = parse_select_list("COUNT(*) AS count, SUM(money), avg(x) AS 'Average x', STD(y) as `s`, MIN(a), MAX(b), count(z)").unwrap();
        let shown: Vec<String> = items
            .iter()
            .map(|i| format!("{} {:?}", i.expr, i.alias))
            .collect();
        assert_eq!(
            shown,
            vec![
                "COUNT(*) Some(\"count\")",
                "SUM(`money`) None",
                "AVG(`x`) Some(\"Average x\")",
                "STD(`y`) Some(\"s\")",
                "MIN(`a`) None",
                "MAX(`b`) None",
                "COUNT(`z`) None",
            ]
        );
        assert!(parse_select_list("").unwrap().is_empty());
        let dims = parse_select_list("DATE(foo), status").unwrap();
        assert_eq!(dims.len(), 2);
    }

    #[test]
    fn sort_lists() {
        let s = parse_sort("a DESC, b asc, LOWER(c)").unwrap();
        let shown: Vec<String> = s
            .iter()
            .map(|i| format!("{} {}", i.expr, i.descending))
            .collect();
        assert_eq!(shown, vec!["`a` true", "`b` false", "LOWER(`c`) false"]);
        assert!(parse_sort(" ").unwrap().is_empty());
        assert_eq!(
            parse_sort("a DESC b").unwrap_err().to_string(),
            "unexpected 'b' at column 8"
        );
        assert_eq!(
            parse_sort("COUNT(*)").unwrap_err().to_string(),
            "aggregate COUNT is only allowed in metrics at column 1"
        );
    }

    #[test]
    fn error_messages_with_columns() {
        assert_eq!(
            err("a = 1 AND (b = 2 OR c = 3"),
            "unexpected end of input, expected ')'"
        );
        assert_eq!(err("a = 1 AND (b = 2 c"), "expected ')' at column 18");
        assert_eq!(
            err("a ="),
            "unexpected end of input, expected an expression"
        );
        assert_eq!(
            err("a = )"),
            "unexpected ')', expected an expression at column 5"
        );
        assert_eq!(
            err("SLEEP(10)"),
            "function SLEEP is not allowed at column 1"
        );
        assert_eq!(
            err("a = pg_sleep(10)"),
            "function PG_SLEEP is not allowed at column 5"
        );
        assert_eq!(
            err("COUNT(*) > 1"),
            "aggregate COUNT is only allowed in metrics at column 1"
        );
        assert_eq!(err("a = 1 b"), "unexpected 'b' at column 7");
        assert_eq!(err("a IS 5"), "expected NULL at column 6");
        assert_eq!(err("a BETWEEN 1 OR 2"), "expected AND at column 13");
        assert_eq!(
            err("a IN 5"),
            "expected '(' or a multi-value field after IN at column 6"
        );
        assert_eq!(
            err("a = AND"),
            "unexpected 'AND', expected an expression at column 5"
        );
        assert_eq!(
            err("DATE(a, b)"),
            "function DATE takes 1 argument at column 1"
        );
        assert_eq!(err("NOW(1)"), "function NOW takes 0 arguments at column 1");
        assert_eq!(
            err("CONCAT()"),
            "function CONCAT takes at least 1 argument at column 1"
        );
        assert_eq!(
            err("LOWER(*)"),
            "unexpected '*', expected an expression at column 7"
        );
        assert_eq!(err("x > INTERVAL 1 fortnight"), "expected an interval unit (SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER or YEAR) at column 16");
        assert_eq!(
            err("x > INTERVAL 'a' DAY"),
            "expected a whole number after INTERVAL at column 14"
        );
        assert_eq!(
            err("x > INTERVAL 1.5 DAY"),
            "INTERVAL needs a whole number up to 1000000 at column 14"
        );
        assert_eq!(
            err("a = 1 AND"),
            "unexpected end of input, expected an expression"
        );
        assert_eq!(
            parse_select_list("SUM(x) AS").unwrap_err().to_string(),
            "unexpected end of input, expected an alias"
        );
        assert_eq!(
            parse_select_list("SUM(x) AS 5").unwrap_err().to_string(),
            "unexpected '5', expected an alias at column 11"
        );
        assert_eq!(
            parse_select_list("a,").unwrap_err().to_string(),
            "unexpected end of input, expected an expression"
        );
    }

    #[test]
    fn nesting_limit() {
        let ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(p(&ok), "`a`");
        let deep = format!(
            "{}a{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(err(&deep), "expressions are nested too deeply at column 33");
        assert_eq!(
            err(&format!("{}a", "NOT ".repeat(40))),
            "expressions are nested too deeply at column 129"
        );
        assert_eq!(
            err(&format!("{}1", "-".repeat(40))),
            "expressions are nested too deeply at column 33"
        );
        assert_eq!(
            err(&format!("{}a{}", "LOWER(".repeat(40), ")".repeat(40))),
            "expressions are nested too deeply at column 193"
        );
    }

    #[test]
    fn columns_on_nodes() {
        let e = parse_filter("amount > 100").unwrap().unwrap();
        assert_eq!(e.col, 8);
        match e.kind {
            ExprKind::Compare { lhs, rhs, .. } => {
                assert_eq!(lhs.col, 1);
                assert_eq!(rhs.col, 10);
            }
            other => panic!("{other:?}"),
        }
    }
}
