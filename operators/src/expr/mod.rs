//! SQL expressions: parsed with `sqlparser` (PostgreSQL dialect), resolved
//! against a [`Resolve`] scope, type-checked and compiled once into an
//! [`Expr`] that evaluates a row without allocating in the common cases.
//!
//! Semantics follow PostgreSQL except where docs/expressions.md says
//! otherwise; that page is the user reference and its table of examples is
//! run by `operators/tests/expr_table.rs`.
//!
//! A compile error ([`ExprError`]) is a validation error of the graph; an
//! evaluation error ([`EvalError`]: division by zero, integer overflow, a
//! failed cast, ...) sends the record to the node's `errors` output.

mod cast;
mod compile;
mod eval;
mod forms;
mod func;
mod like;

use std::fmt;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, Tokenizer};

use crate::suggest;
use crate::value::{Schema, Type, Value};

use self::compile::Compiler;
use self::eval::Node;

/// At most this many tokens (whitespace and comments not counted) in one
/// expression; this bounds the parser's tree depth.
pub const MAX_TOKENS: usize = 10_000;

/// Resolves identifiers in an expression to a slot of the input row and its type.
pub trait Resolve {
    /// `parts` is the identifier as written, split on '.', e.g. `["bytes"]` or
    /// `["left", "x"]`.
    ///
    /// # Errors
    /// A complete user-facing message, e.g. `unknown field "byte" (did you
    /// mean "bytes"?)`.
    fn resolve(&self, parts: &[String]) -> Result<(usize, Type), String>;
}

/// A schema resolves single-part names, matched exactly (case-sensitive).
impl Resolve for Schema {
    fn resolve(&self, parts: &[String]) -> Result<(usize, Type), String> {
        let name = parts.join(".");
        if let [one] = parts {
            if let Some(i) = self.index_of(one) {
                return Ok((i, self.fields()[i].ty));
            }
        }
        let hint = suggest::hint(&name, self.names());
        if !hint.is_empty() {
            return Err(format!("unknown field \"{name}\"{hint}"));
        }
        let names: Vec<&str> = self.names().collect();
        if names.is_empty() {
            Err(format!(
                "unknown field \"{name}\" (the input has no fields)"
            ))
        } else {
            Err(format!(
                "unknown field \"{name}\" (the input has: {})",
                names.join(", ")
            ))
        }
    }
}

/// A compile error: a complete message without the JSON path, which the
/// caller adds.
#[derive(Clone, Debug, PartialEq)]
pub struct ExprError {
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ExprError {
    fn new(message: impl Into<String>) -> ExprError {
        ExprError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExprError {}

/// An evaluation error: the record goes to the node's `errors` output with
/// this reason (or the job stops, with `"on_error": "fail"`).
#[derive(Clone, Debug, PartialEq)]
pub struct EvalError {
    /// Why, e.g. `division by zero`.
    pub reason: String,
}

impl EvalError {
    pub(crate) fn new(reason: impl Into<String>) -> EvalError {
        EvalError {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for EvalError {}

/// A compiled expression: cheap to clone (a tree of nodes), `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Expr {
    node: Node,
    ty: Option<Type>,
}

impl Expr {
    /// Static result type; `None` for an expression that is always NULL and
    /// has no type (the bare literal `NULL`, `NULL + NULL`, a `CASE` whose
    /// branches are all `NULL`, ...). `CAST(NULL AS t)` has type `t`.
    pub fn ty(&self) -> Option<Type> {
        self.ty
    }

    /// Evaluates against a row in the schema the expression was compiled
    /// against.
    ///
    /// # Errors
    /// Division by zero, integer overflow, a failed cast, ...: the record
    /// goes to the node's `errors` output.
    pub fn eval(&self, row: &[Value]) -> Result<Value, EvalError> {
        self.node.eval(row)
    }

    /// The row slot this expression reads, if it is a bare field reference
    /// (so a caller may move the value instead of evaluating a clone).
    pub fn as_field(&self) -> Option<usize> {
        match self.node {
            eval::Node::Field(i) => Some(i),
            _ => None,
        }
    }

    /// Evaluates a filter or route condition: NULL counts as false. Whether
    /// the expression is a bool is the caller's compile-time check (see
    /// [`Expr::ty`] or [`compile_predicate`]).
    ///
    /// # Errors
    /// As [`Expr::eval`]; also when the value is not a bool.
    pub fn eval_predicate(&self, row: &[Value]) -> Result<bool, EvalError> {
        match self.node.eval(row)? {
            Value::Bool(b) => Ok(b),
            Value::Null => Ok(false),
            other => Err(EvalError::new(format!(
                "the condition gave a value of type {}, not a bool",
                eval::value_type(&other)
            ))),
        }
    }
}

/// Parses and compiles an expression against `scope`.
///
/// # Errors
/// A syntax error (with `at column N`), an unknown field or function, a type
/// error, or a construct lockstep does not support.
pub fn compile(src: &str, scope: &dyn Resolve) -> Result<Expr, ExprError> {
    let ast = parse(src)?;
    let t = Compiler::new(scope).expr(&ast).map_err(ExprError::new)?;
    Ok(Expr {
        node: t.node,
        ty: t.ty,
    })
}

/// Compiles a condition that must be a bool (or the NULL literal); `what`
/// names it in the message, e.g. `WHERE needs a bool, got int`.
///
/// # Errors
/// As [`compile`], or when the expression is not a bool.
pub fn compile_predicate(src: &str, scope: &dyn Resolve, what: &str) -> Result<Expr, ExprError> {
    let e = compile(src, scope)?;
    match e.ty {
        None | Some(Type::Bool) => Ok(e),
        Some(t) => Err(ExprError::new(format!("{what} needs a bool, got {t}"))),
    }
}

/// ` at column N` (or ` at line L, column N` past the first line).
fn at(loc: Location) -> String {
    match loc.line {
        0 => String::new(),
        1 => format!(" at column {}", loc.column),
        l => format!(" at line {l}, column {}", loc.column),
    }
}

/// Rewrites sqlparser's `... at Line: L, Column: C` into our wording.
fn parser_message(msg: &str) -> String {
    let msg = msg.strip_prefix("sql parser error: ").unwrap_or(msg);
    let (body, loc) = match msg.rfind(" at Line: ") {
        Some(i) => {
            let rest = &msg[i + " at Line: ".len()..];
            let loc = rest.split_once(", Column: ").and_then(|(l, c)| {
                Some(Location::new(
                    l.trim().parse().ok()?,
                    c.trim().parse().ok()?,
                ))
            });
            match loc {
                Some(loc) => (&msg[..i], at(loc)),
                None => (msg, String::new()),
            }
        }
        None => (msg, String::new()),
    };
    let body = body
        .replace("Expected: ", "expected ")
        .replace("found: EOF", "found the end of the expression")
        .replace("found: ", "found ");
    format!("syntax error: {body}{loc}")
}

fn parse(src: &str) -> Result<sqlparser::ast::Expr, ExprError> {
    if src.trim().is_empty() {
        return Err(ExprError::new("empty expression"));
    }
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, src)
        .tokenize_with_location()
        .map_err(|e| ExprError::new(format!("syntax error: {}{}", e.message, at(e.location))))?;
    let n = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .count();
    if n > MAX_TOKENS {
        return Err(ExprError::new(format!(
            "expression is too long ({n} tokens, at most {MAX_TOKENS})"
        )));
    }
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let e = parser.parse_expr().map_err(|e| {
        let msg = e.to_string();
        if msg.contains("recursion limit exceeded") {
            ExprError::new(
                "expression is nested too deeply (the SQL parser allows about 50 levels of \
                     parentheses, operators or function calls); split it across two map nodes",
            )
        } else {
            ExprError::new(parser_message(&msg))
        }
    })?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(ExprError::new(format!(
            "syntax error: unexpected \"{}\" after the end of the expression{} \
             (combine conditions with AND or OR; double-quote names that contain spaces)",
            next.token,
            at(next.span.start)
        )));
    }
    Ok(e)
}

#[cfg(test)]
mod tests;
