//! Lexer: turns query source text into tokens carrying 1-based character columns.

use super::ast::QueryError;

/// Longest accepted input, in characters.
pub const MAX_INPUT_CHARS: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A bare identifier or keyword (keywords are recognised by the parser, case-insensitively).
    Ident(String),
    /// An identifier in backticks or double quotes; never a keyword.
    QuotedIdent(String),
    /// A single-quoted string, with `''` already unescaped.
    Str(String),
    /// Digits with an optional `.digits` part.
    Number(String),
    Comma,
    LParen,
    RParen,
    Star,
    Plus,
    Minus,
    Slash,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Tok {
    /// How the token is named in error messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::QuotedIdent(s) => format!("'{s}'"),
            Tok::Str(_) => "a string".to_string(),
            Tok::Number(n) => format!("'{n}'"),
            Tok::Comma => "','".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Star => "'*'".into(),
            Tok::Plus => "'+'".into(),
            Tok::Minus => "'-'".into(),
            Tok::Slash => "'/'".into(),
            Tok::Eq => "'='".into(),
            Tok::Ne => "'!='".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// 1-based character column of the token's first character.
    pub col: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Is `s` a valid identifier (`[A-Za-z_][A-Za-z0-9_]*`)?
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if is_ident_start(c) => chars.all(is_ident_char),
        _ => false,
    }
}

/// Splits `src` into tokens. Fails on inputs longer than [`MAX_INPUT_CHARS`], on
/// unterminated strings or quoted identifiers, on malformed numbers, on integers that
/// do not fit in an `i64`, and on any character outside the language.
pub fn tokenize(src: &str) -> Result<Vec<Token>, QueryError> {
    // A char is at most 4 bytes, so the byte check rejects huge inputs without a scan.
    if src.len() > MAX_INPUT_CHARS * 4 || src.chars().count() > MAX_INPUT_CHARS {
        return Err(QueryError::new(
            format!("input is too long (max {MAX_INPUT_CHARS} characters)"),
            None,
        ));
    }
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match c {
            ',' => (Tok::Comma, 1),
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            '*' => (Tok::Star, 1),
            '+' => (Tok::Plus, 1),
            '-' => (Tok::Minus, 1),
            '/' => (Tok::Slash, 1),
            '=' => (Tok::Eq, 1),
            '!' if next == Some('=') => (Tok::Ne, 2),
            '<' if next == Some('>') => (Tok::Ne, 2),
            '<' if next == Some('=') => (Tok::Le, 2),
            '<' => (Tok::Lt, 1),
            '>' if next == Some('=') => (Tok::Ge, 2),
            '>' => (Tok::Gt, 1),
            '\'' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return Err(QueryError::at("unterminated string", col)),
                        Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                            s.push('\'');
                            j += 2;
                        }
                        Some('\'') => break,
                        Some(&ch) => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                (Tok::Str(s), j + 1 - i)
            }
            '`' | '"' => {
                let mut j = i + 1;
                while chars.get(j).is_some_and(|&ch| ch != c) {
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(QueryError::at("unterminated quoted identifier", col));
                }
                let name: String = chars[i + 1..j].iter().collect();
                if !is_identifier(&name) {
                    return Err(QueryError::at("invalid quoted identifier", col));
                }
                (Tok::QuotedIdent(name), j + 1 - i)
            }
            c if c.is_ascii_digit() => {
                let mut j = i;
                while chars.get(j).is_some_and(|ch| ch.is_ascii_digit()) {
                    j += 1;
                }
                let mut decimal = false;
                if chars.get(j) == Some(&'.')
                    && chars.get(j + 1).is_some_and(|ch| ch.is_ascii_digit())
                {
                    decimal = true;
                    j += 1;
                    while chars.get(j).is_some_and(|ch| ch.is_ascii_digit()) {
                        j += 1;
                    }
                }
                if chars
                    .get(j)
                    .is_some_and(|&ch| is_ident_char(ch) || ch == '.')
                {
                    return Err(QueryError::at("invalid number", col));
                }
                let text: String = chars[i..j].iter().collect();
                if !decimal && text.parse::<i64>().is_err() {
                    return Err(QueryError::at("integer is out of range", col));
                }
                (Tok::Number(text), j - i)
            }
            c if is_ident_start(c) => {
                let mut j = i;
                while chars.get(j).is_some_and(|&ch| is_ident_char(ch)) {
                    j += 1;
                }
                // A dotted name (`parameters.customer`): each part an identifier.
                while chars.get(j) == Some(&'.')
                    && chars.get(j + 1).is_some_and(|&ch| is_ident_start(ch))
                {
                    j += 1;
                    while chars.get(j).is_some_and(|&ch| is_ident_char(ch)) {
                        j += 1;
                    }
                }
                (Tok::Ident(chars[i..j].iter().collect()), j - i)
            }
            other => {
                let shown = if other.is_control() {
                    format!("U+{:04X}", other as u32)
                } else {
                    other.to_string()
                };
                return Err(QueryError::at(
                    format!("unexpected character '{shown}'"),
                    col,
                ));
            }
        };
        out.push(Token { tok, col });
        i += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        tokenize(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn operators_and_punctuation() {
        assert_eq!(
            toks("= != <> < <= > >= + - * / ( ) ,"),
            vec![
                Tok::Eq,
                Tok::Ne,
                Tok::Ne,
                Tok::Lt,
                Tok::Le,
                Tok::Gt,
                Tok::Ge,
                Tok::Plus,
                Tok::Minus,
                Tok::Star,
                Tok::Slash,
                Tok::LParen,
                Tok::RParen,
                Tok::Comma
            ]
        );
    }

    #[test]
    fn strings_numbers_identifiers() {
        assert_eq!(
            toks("'it''s' 12 3.5 abc_1 `Quoted` \"dq\""),
            vec![
                Tok::Str("it's".into()),
                Tok::Number("12".into()),
                Tok::Number("3.5".into()),
                Tok::Ident("abc_1".into()),
                Tok::QuotedIdent("Quoted".into()),
                Tok::QuotedIdent("dq".into()),
            ]
        );
        assert_eq!(toks("''"), vec![Tok::Str(String::new())]);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let t = tokenize("'é' = x").unwrap();
        assert_eq!(t[1].col, 5);
        assert_eq!(t[2].col, 7);
    }

    #[test]
    fn errors() {
        let err = |s: &str| tokenize(s).unwrap_err().to_string();
        assert_eq!(err("a = 'abc"), "unterminated string at column 5");
        assert_eq!(err("`abc"), "unterminated quoted identifier at column 1");
        assert_eq!(err("`a b`"), "invalid quoted identifier at column 1");
        assert_eq!(err("a; b"), "unexpected character ';' at column 2");
        assert_eq!(err("12abc"), "invalid number at column 1");
        assert_eq!(err("1.2.3"), "invalid number at column 1");
        assert_eq!(
            err("99999999999999999999"),
            "integer is out of range at column 1"
        );
        assert_eq!(err("a\u{0}"), "unexpected character 'U+0000' at column 2");
        let long = "a".repeat(MAX_INPUT_CHARS + 1);
        assert_eq!(err(&long), "input is too long (max 4096 characters)");
        assert!(tokenize(&"a".repeat(MAX_INPUT_CHARS)).is_ok());
    }

    #[test]
    fn identifier_shape() {
        assert!(is_identifier("_a1"));
        assert!(!is_identifier("1a"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("a-b"));
    }
}
