//! Fuzz/property tests: random and hostile inputs never panic, overflow the stack or hang,
//! compiled SQL never carries client text, and canonical renderings parse back unchanged.

use std::time::{Duration, Instant};

use super::compile::{
    compile_filter, compile_report, compile_sort, FieldSpec, FieldType, Params, Schema,
};
use super::parser::{parse_filter, parse_select_list, parse_sort};

/// Deterministic xorshift64* generator (no dependencies).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn schema() -> Schema {
    let f = |name: &str, ty: FieldType, multi: bool| FieldSpec {
        name: name.into(),
        ty,
        multi,
    };
    Schema {
        fields: vec![
            f("amount", FieldType::Number, false),
            f("status", FieldType::Text, false),
            f("closedAt", FieldType::Timestamp, false),
            f("active", FieldType::Bool, false),
            f("owner", FieldType::Id, false),
            f("tags", FieldType::Text, true),
            f("nums", FieldType::Number, true),
        ],
    }
}

const SOUP: &[&str] = &[
    "amount",
    "status",
    "closedAt",
    "active",
    "owner",
    "tags",
    "nums",
    "id",
    "recordID",
    "createdAt",
    "user_id",
    "amout",
    "AND",
    "OR",
    "NOT",
    "LIKE",
    "IN",
    "IS",
    "NULL",
    "BETWEEN",
    "TRUE",
    "false",
    "INTERVAL",
    "DAY",
    "quarter",
    "AS",
    "ASC",
    "DESC",
    "(",
    ")",
    "(",
    ")",
    ",",
    "*",
    "+",
    "-",
    "/",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "'",
    "''",
    "'won'",
    "'2019-05-01'",
    "'2019-05-01T00:00:00Z'",
    "'x''y'",
    "\"",
    "`",
    "`status`",
    "\"amount\"",
    "--",
    "/*",
    "*/",
    ";",
    "pg_sleep(10)",
    "SLEEP(1)",
    "DROP TABLE records",
    "$1",
    "::text",
    "\\",
    "é",
    "日本",
    "🦀",
    "\u{0}",
    "\u{202e}",
    "0",
    "1",
    "-1",
    "2010",
    "3.25",
    "99999999999999999999",
    "9223372036854775807",
    "1.",
    ".5",
    "DATE(",
    "YEAR(",
    "MONTH(",
    "QUARTER(",
    "DAY(",
    "DATE_FORMAT(",
    "'%Y-%m'",
    "'%q'",
    "CONCAT(",
    "NOW()",
    "DATE_ADD(",
    "DATE_SUB(",
    "LOWER(",
    "UPPER(",
    "COALESCE(",
    "COUNT(*)",
    "COUNT(",
    "SUM(",
    "MIN(",
    "MAX(",
    "AVG(",
    "STD(",
    " ",
    " ",
    " ",
    "\t",
    "\n",
];

fn soup(rng: &mut Rng, max_tokens: usize) -> String {
    let n = rng.below(max_tokens) + 1;
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(rng.pick(SOUP));
        if rng.below(3) > 0 {
            s.push(' ');
        }
    }
    s
}

/// Checks the invariants of compiled SQL: no client text (the soup's hostile pieces) and
/// every placeholder refers to a bound parameter.
fn check_sql(sql: &str, params: &[String], src: &str) {
    for bad in [
        ";", "--", "/*", "DROP", "sleep", "SLEEP", "'won'", "\\", "é", "🦀", "amout",
    ] {
        assert!(
            !sql.contains(bad),
            "{bad:?} leaked into SQL for {src:?}: {sql}"
        );
    }
    let bytes = sql.as_bytes();
    for (i, _) in sql.match_indices('$') {
        let digits: String = bytes[i + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| b as char)
            .collect();
        let n: usize = digits.parse().unwrap_or(0);
        assert!(
            n >= 1 && n <= params.len(),
            "bad placeholder ${digits} in {sql}"
        );
    }
}

/// Runs one input through every entry point; each must return (Ok or Err) promptly.
fn exercise(src: &str, schema: &Schema) {
    let start = Instant::now();
    let _ = parse_filter(src);
    let _ = parse_sort(src);
    let _ = parse_select_list(src);
    let mut params = Params::new();
    if let Ok(Some(sql)) = compile_filter(src, schema, &mut params) {
        check_sql(&sql, &params.values, src);
    }
    if let Ok(sql) = compile_sort(src, schema) {
        check_sql(&sql, &[], src);
    }
    for (m, d, f) in [
        (src, "", ""),
        ("", src, ""),
        ("", "", src),
        ("SUM(amount)", "status", src),
    ] {
        if let Ok(r) = compile_report(1, schema, m, d, f) {
            check_sql(&r.sql, &r.params, src);
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "too slow on input of {} chars",
        src.len()
    );
}

#[test]
fn random_token_soup_never_panics() {
    let schema = schema();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..5000 {
        let src = soup(&mut rng, 24);
        exercise(&src, &schema);
    }
}

#[test]
fn random_characters_never_panic() {
    let schema = schema();
    let mut rng = Rng(42);
    let alphabet: Vec<char> = "aAzZ_09 ()',`\"*+-/=<>!.;%$\\\n\té日🦀\u{0}"
        .chars()
        .collect();
    for _ in 0..3000 {
        let n = rng.below(40);
        let src: String = (0..n)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        exercise(&src, &schema);
    }
}

/// Generates a syntactically valid expression (not necessarily well-typed).
fn gen_expr(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 {
        return rng
            .pick(&[
                "amount",
                "status",
                "closedAt",
                "active",
                "owner",
                "id",
                "1",
                "2.5",
                "'won'",
                "NULL",
                "TRUE",
                "'2019-05-01'",
            ])
            .to_string();
    }
    let a = gen_expr(rng, depth - 1);
    let b = gen_expr(rng, depth - 1);
    match rng.below(16) {
        0 => format!("{a} AND {b}"),
        1 => format!("{a} OR {b}"),
        2 => format!("NOT {a}"),
        3 => format!("({a})"),
        4 => format!(
            "{a} {} {b}",
            rng.pick(&["=", "!=", "<>", "<", "<=", ">", ">="])
        ),
        5 => format!("{a} {} {b}", rng.pick(&["+", "-", "*", "/"])),
        6 => format!("-{a}"),
        7 => format!("{a} {}LIKE {b}", rng.pick(&["", "NOT "])),
        8 => format!("{a} {}IN ({b}, {a})", rng.pick(&["", "NOT "])),
        9 => format!("{a} IS {}NULL", rng.pick(&["", "NOT "])),
        10 => format!("{a} {}BETWEEN {b} AND {a}", rng.pick(&["", "NOT "])),
        11 => format!(
            "{}({a})",
            rng.pick(&["DATE", "YEAR", "LOWER", "UPPER", "MONTH"])
        ),
        12 => format!("COALESCE({a}, {b})"),
        13 => format!("CONCAT({a}, {b})"),
        14 => format!("{a} IN tags"),
        _ => format!("DATE_ADD({a}, INTERVAL {} DAY)", rng.below(100)),
    }
}

#[test]
fn canonical_rendering_round_trips() {
    let schema = schema();
    let mut rng = Rng(7);
    let mut parsed = 0;
    for _ in 0..3000 {
        let depth = rng.below(4);
        let src = gen_expr(&mut rng, depth);
        exercise(&src, &schema);
        if let Ok(Some(e)) = parse_filter(&src) {
            parsed += 1;
            let shown = e.to_string();
            let again = parse_filter(&shown)
                .unwrap_or_else(|err| panic!("{src} -> {shown}: {err}"))
                .map(|e| e.to_string());
            assert_eq!(again.as_deref(), Some(shown.as_str()), "{src}");
        }
    }
    assert!(
        parsed > 1000,
        "generator produced too few parseable inputs: {parsed}"
    );
}

#[test]
fn hostile_shapes() {
    let schema = schema();
    let n = 10_000;
    let inputs = [
        format!("{}amount = 1{}", "(".repeat(n), ")".repeat(n)),
        format!("{}active", "NOT ".repeat(n)),
        format!("amount = {}1", "-".repeat(n)),
        format!("amount = {}", "- ".repeat(n)),
        "(".repeat(n),
        format!("{}1{}", "LOWER(".repeat(n), ")".repeat(n)),
        "a".repeat(1 << 20),
        format!("'{}'", "x".repeat(1 << 20)),
        "é".repeat(5000),
        // Within the length limit but as deep/long as it can get.
        format!("{}amount = 1{}", "(".repeat(2000), ")".repeat(2000)),
        format!("{}active", "NOT ".repeat(1000)),
        format!("amount = {}1", "-".repeat(4000)),
        format!("amount = {}", "1 + ".repeat(1000) + "1"),
        format!("amount = {}", "1 * ".repeat(1000) + "1"),
        format!("{}active", "amount = 1 OR ".repeat(290)),
        format!("{}TRUE", "active AND ".repeat(370)),
        format!("amount IN ({}1)", "1, ".repeat(1300)),
        format!("{}1{}", "COALESCE(".repeat(31), ")".repeat(31)),
        format!("{}'a'{} = 'a'", "LOWER(".repeat(31), ")".repeat(31)),
        format!("{}amount{} > 1", "(-".repeat(16), ")".repeat(16)),
        "'".repeat(4096),
        "`".repeat(4096),
        "amount = '".to_string() + &"''".repeat(2000),
        "1".repeat(4096),
        format!("COUNT({}*{})", "(".repeat(40), ")".repeat(40)),
    ];
    for src in &inputs {
        exercise(src, &schema);
    }
    // The deep ones are refused with the documented messages.
    let too_deep = parse_filter(&format!("{}a{}", "(".repeat(100), ")".repeat(100))).unwrap_err();
    assert_eq!(
        too_deep.to_string(),
        "expressions are nested too deeply at column 33"
    );
    let long = parse_filter(&"a".repeat(1 << 20)).unwrap_err();
    assert_eq!(long.to_string(), "input is too long (max 4096 characters)");
    // Long flat chains within the limit are fine.
    let mut p = Params::new();
    let chain = format!("amount = {}1", "1 + ".repeat(1000));
    assert!(compile_filter(&chain, &schema, &mut p).is_ok());
    assert_eq!(p.values.len(), 1001);
    let ors = format!("{}active", "amount = 1 OR ".repeat(290));
    assert!(compile_filter(&ors, &schema, &mut Params::new()).is_ok());
}

#[test]
fn deepest_allowed_nesting_compiles() {
    // 32 levels mixing every nesting construct, inside a default-size test thread stack.
    let schema = schema();
    let mut src = "amount".to_string();
    for i in 0..30 {
        src = match i % 3 {
            _ if i == 0 => format!("-{src}"),
            0 | 1 => format!("({src} + 1)"),
            _ => format!("COALESCE({src}, 2)"),
        };
    }
    // 30 levels above, plus NOT and its parentheses: exactly the limit of 32.
    let src = format!("NOT ({src} > 0)");
    let mut p = Params::new();
    let sql = compile_filter(&src, &schema, &mut p).unwrap_or_else(|e| panic!("{e}"));
    check_sql(&sql.unwrap_or_default(), &p.values, &src);
    let deeper = format!("NOT {src}");
    let err = compile_filter(&deeper, &schema, &mut Params::new()).unwrap_err();
    assert_eq!(err.message, "expressions are nested too deeply");
}

#[test]
fn postgres_limits_are_refused_by_the_compiler() {
    let schema = schema();
    // Postgres takes at most 100 arguments per function call.
    let args = |n: usize| vec!["status"; n].join(", ");
    let mut p = Params::new();
    assert!(compile_filter(&format!("CONCAT({}) = 'x'", args(100)), &schema, &mut p).is_ok());
    let err = compile_filter(
        &format!("CONCAT({}) = 'x'", args(101)),
        &schema,
        &mut Params::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "function CONCAT takes at most 100 arguments at column 1"
    );
    let err = compile_filter(
        &format!("COALESCE({}) = 'x'", args(101)),
        &schema,
        &mut Params::new(),
    )
    .unwrap_err();
    assert_eq!(err.message, "function COALESCE takes at most 100 arguments");

    // Postgres takes at most 1 664 columns per query; we take 100 metrics,
    // 100 dimensions and 100 sort keys.
    let dims = |n: usize| vec!["1"; n].join(",");
    let keys = |n: usize| {
        (0..n)
            .map(|i| format!("status AS d{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert!(compile_report(1, &schema, "", &keys(100), "").is_ok());
    let err = compile_report(1, &schema, "", &dims(2000), "").unwrap_err();
    assert_eq!(
        err.to_string(),
        "dimensions: at most 100 expressions are allowed at column 201"
    );
    let err = compile_report(1, &schema, &vec!["SUM(amount)"; 101].join(","), "", "").unwrap_err();
    assert!(
        err.message
            .starts_with("metrics: at most 100 expressions are allowed"),
        "{err}"
    );
    let fields = |n: usize| vec!["status"; n].join(",");
    assert!(compile_sort(&fields(100), &schema).is_ok());
    let err = compile_sort(&fields(101), &schema).unwrap_err();
    assert_eq!(err.message, "at most 100 expressions are allowed");
}
