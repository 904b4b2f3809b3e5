//! From sqlparser's AST to a type-checked [`Node`] tree. Every construct that
//! lockstep does not support is a compile error naming it, never a panic.

use sqlparser::ast::{
    self, BinaryOperator as B, CastKind, CeilFloorKind, DateTimeField, UnaryOperator as U,
    Value as AV,
};

use super::cast::{self, CastOp};
use super::eval::{ArithOp, CmpOp, Node};
use super::forms::{literal, number};
use super::func;
use super::Resolve;
use crate::value::{Type, Value};

/// How deeply expressions may nest.
pub(crate) const MAX_DEPTH: usize = 200;

/// A compiled node and its static type (`None`: the NULL literal's unknown
/// type; such an expression is always NULL).
#[derive(Debug)]
pub(crate) struct Typed {
    pub(crate) node: Node,
    pub(crate) ty: Option<Type>,
}

impl Typed {
    pub(crate) fn new(node: Node, ty: Option<Type>) -> Typed {
        Typed { node, ty }
    }

    pub(crate) fn boxed(self) -> Box<Node> {
        Box::new(self.node)
    }

    /// Converts an int operand to float when the unified type is float.
    pub(crate) fn coerce(self, target: Option<Type>) -> Typed {
        if self.ty == Some(Type::Int) && target == Some(Type::Float) {
            Typed::new(
                Node::Cast(CastOp::IntToFloat, self.boxed()),
                Some(Type::Float),
            )
        } else {
            self
        }
    }

    pub(crate) fn string_literal(&self) -> Option<&str> {
        match (&self.node, self.ty) {
            (Node::Const(Value::Str(s)), Some(Type::String)) => Some(s),
            _ => None,
        }
    }
}

/// A static type's name for messages (`NULL` for the unknown type).
pub(crate) fn tn(t: Option<Type>) -> &'static str {
    t.map_or("NULL", Type::name)
}

/// The common type of CASE branches or coalesce arguments: identical types,
/// or int with float giving float; NULL goes with anything.
pub(crate) fn unify(types: &[Option<Type>]) -> Result<Option<Type>, (Type, Type)> {
    let mut acc: Option<Type> = None;
    for t in types.iter().flatten() {
        acc = match acc {
            None => Some(*t),
            Some(a) if a == *t => Some(a),
            Some(a) if a.is_numeric() && t.is_numeric() => Some(Type::Float),
            Some(a) => return Err((a, *t)),
        };
    }
    Ok(acc)
}

/// Whether values of two types can be compared.
fn comparable(a: Option<Type>, b: Option<Type>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => {
            x == y
                || (x.is_numeric() && y.is_numeric())
                || matches!(
                    (x, y),
                    (Type::Timestamp, Type::Int) | (Type::Int, Type::Timestamp)
                )
        }
        _ => true,
    }
}

/// The result type of an arithmetic operator, `None` when not allowed.
fn arith_type(op: ArithOp, a: Type, b: Type) -> Option<Type> {
    use Type::{Float, Int, Timestamp};
    match (a, b) {
        (Int, Int) => Some(Int),
        (Int | Float, Int | Float) => Some(Float),
        (Timestamp, Int) if matches!(op, ArithOp::Add | ArithOp::Sub) => Some(Timestamp),
        (Int, Timestamp) if op == ArithOp::Add => Some(Timestamp),
        (Timestamp, Timestamp) if op == ArithOp::Sub => Some(Int),
        _ => None,
    }
}

/// A compiled node, or a compile error's message.
pub(crate) type R = Result<Typed, String>;

/// The AST walker.
pub(crate) struct Compiler<'a> {
    scope: &'a dyn Resolve,
    depth: usize,
}

impl<'a> Compiler<'a> {
    pub(crate) fn new(scope: &'a dyn Resolve) -> Compiler<'a> {
        Compiler { scope, depth: 0 }
    }

    /// Compiles one (sub)expression.
    pub(crate) fn expr(&mut self, e: &ast::Expr) -> R {
        if self.depth >= MAX_DEPTH {
            return Err(format!(
                "expression is nested too deeply (more than {MAX_DEPTH} levels)"
            ));
        }
        self.depth += 1;
        let r = self.expr_inner(e);
        self.depth -= 1;
        r
    }

    fn expr_inner(&mut self, e: &ast::Expr) -> R {
        use ast::Expr as A;
        match e {
            A::Identifier(id) => self.field(std::slice::from_ref(&id.value)),
            A::CompoundIdentifier(ids) => {
                let parts: Vec<String> = ids.iter().map(|i| i.value.clone()).collect();
                self.field(&parts)
            }
            A::Value(v) => literal(&v.value, false),
            A::TypedString(ts) => {
                let to = cast::type_from_ast(&ts.data_type)?;
                let s = literal(&ts.value.value, false)?;
                if s.ty != Some(Type::String) {
                    return Err(format!("{} needs a string literal", ts.data_type));
                }
                cast_to(s, to)
            }
            A::Nested(inner) => self.expr(inner),
            A::UnaryOp { op, expr } => self.unary(op, expr),
            A::BinaryOp { left, op, right } => self.binary(left, op, right),
            A::IsNull(x) | A::IsNotNull(x) => {
                let t = self.expr(x)?;
                let negated = matches!(e, A::IsNotNull(_));
                Ok(bool_node(Node::IsNull {
                    expr: t.boxed(),
                    negated,
                }))
            }
            A::IsUnknown(x) | A::IsNotUnknown(x) => {
                let t = self.bool_operand(x, "IS UNKNOWN")?;
                let negated = matches!(e, A::IsNotUnknown(_));
                Ok(bool_node(Node::IsNull {
                    expr: t.boxed(),
                    negated,
                }))
            }
            A::IsTrue(x) | A::IsNotTrue(x) | A::IsFalse(x) | A::IsNotFalse(x) => {
                let (want, negated, what) = match e {
                    A::IsTrue(_) => (true, false, "IS TRUE"),
                    A::IsNotTrue(_) => (true, true, "IS NOT TRUE"),
                    A::IsFalse(_) => (false, false, "IS FALSE"),
                    _ => (false, true, "IS NOT FALSE"),
                };
                let t = self.bool_operand(x, what)?;
                Ok(bool_node(Node::IsBool {
                    expr: t.boxed(),
                    want,
                    negated,
                }))
            }
            A::IsDistinctFrom(a, b) | A::IsNotDistinctFrom(a, b) => {
                let what = if matches!(e, A::IsDistinctFrom(..)) {
                    "IS DISTINCT FROM"
                } else {
                    "IS NOT DISTINCT FROM"
                };
                let (l, r) = self.comparison_pair(a, b, what)?;
                Ok(bool_node(Node::Distinct {
                    negated: matches!(e, A::IsNotDistinctFrom(..)),
                    left: l.boxed(),
                    right: r.boxed(),
                }))
            }
            A::InList {
                expr,
                list,
                negated,
            } => self.in_list(expr, list, *negated),
            A::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let x = self.expr(expr)?;
                let low = self.comparand(&x, low, "BETWEEN")?;
                let high = self.comparand(&x, high, "BETWEEN")?;
                Ok(bool_node(Node::Between {
                    expr: x.boxed(),
                    low: low.boxed(),
                    high: high.boxed(),
                    negated: *negated,
                }))
            }
            A::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            }
            | A::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                let ci = matches!(e, A::ILike { .. });
                let what = if ci { "ILIKE" } else { "LIKE" };
                if *any {
                    return Err(format!(
                        "{what} ANY is not supported; combine LIKEs with OR"
                    ));
                }
                self.like(expr, pattern, escape_char.as_deref(), ci, *negated)
            }
            A::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref()),
            A::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                match kind {
                    CastKind::Cast | CastKind::DoubleColon => {}
                    CastKind::TryCast | CastKind::SafeCast => {
                        return Err(
                            "TRY_CAST / SAFE_CAST are not supported: a failed CAST sends \
                             the record to the node's errors output"
                                .into(),
                        )
                    }
                }
                if format.is_some() {
                    return Err("CAST ... FORMAT is not supported".into());
                }
                let to = cast::type_from_ast(data_type)?;
                let x = self.expr(expr)?;
                cast_to(x, to)
            }
            A::Ceil { expr, field } | A::Floor { expr, field } => {
                let name = if matches!(e, A::Ceil { .. }) {
                    "ceil"
                } else {
                    "floor"
                };
                if !matches!(
                    field,
                    CeilFloorKind::DateTimeField(DateTimeField::NoDateTime)
                ) {
                    return Err(format!("{name} takes one argument: {name}(x)"));
                }
                let x = self.expr(expr)?;
                func::compile_call(name, vec![x])
            }
            A::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.expr(expr)?];
                match (substring_from, substring_for) {
                    (Some(f), _) => args.push(self.expr(f)?),
                    // `substring(s FOR n)` starts at 1; `substr(s)` is an error.
                    (None, Some(_)) => {
                        args.push(Typed::new(Node::Const(Value::Int(1)), Some(Type::Int)));
                    }
                    (None, None) => {}
                }
                if let Some(f) = substring_for {
                    args.push(self.expr(f)?);
                }
                func::compile_call("substr", args)
            }
            A::Function(f) => self.function(f),
            other => Err(format!(
                "{} is not supported in lockstep expressions",
                construct_name(other)
            )),
        }
    }

    pub(crate) fn field(&self, parts: &[String]) -> R {
        let (i, t) = self.scope.resolve(parts)?;
        Ok(Typed::new(Node::Field(i), Some(t)))
    }

    pub(crate) fn bool_operand(&mut self, e: &ast::Expr, what: &str) -> R {
        let t = self.expr(e)?;
        if matches!(t.ty, None | Some(Type::Bool)) {
            Ok(t)
        } else {
            Err(format!("{what} needs a bool operand, got {}", tn(t.ty)))
        }
    }

    fn unary(&mut self, op: &U, e: &ast::Expr) -> R {
        match op {
            U::Minus | U::Plus => {
                if let (U::Minus, ast::Expr::Value(v)) = (op, e) {
                    if let AV::Number(n, _) = &v.value {
                        return number(n, true);
                    }
                }
                let t = self.expr(e)?;
                if !matches!(t.ty, None | Some(Type::Int | Type::Float)) {
                    return Err(format!("operator {op} cannot take {}", tn(t.ty)));
                }
                Ok(match op {
                    U::Minus => Typed::new(Node::Neg(Box::new(t.node)), t.ty),
                    _ => t,
                })
            }
            U::Not => {
                let t = self.bool_operand(e, "NOT")?;
                Ok(bool_node(Node::Not(t.boxed())))
            }
            other => Err(format!("operator {other} is not supported")),
        }
    }

    fn binary(&mut self, l: &ast::Expr, op: &B, r: &ast::Expr) -> R {
        let arith = match op {
            B::Plus => Some(ArithOp::Add),
            B::Minus => Some(ArithOp::Sub),
            B::Multiply => Some(ArithOp::Mul),
            B::Divide => Some(ArithOp::Div),
            B::Modulo => Some(ArithOp::Rem),
            _ => None,
        };
        if let Some(a) = arith {
            return self.arith(a, l, r);
        }
        let cmp = match op {
            B::Eq => Some((CmpOp::Eq, "=")),
            B::NotEq => Some((CmpOp::Ne, "<>")),
            B::Lt => Some((CmpOp::Lt, "<")),
            B::LtEq => Some((CmpOp::Le, "<=")),
            B::Gt => Some((CmpOp::Gt, ">")),
            B::GtEq => Some((CmpOp::Ge, ">=")),
            _ => None,
        };
        if let Some((c, sym)) = cmp {
            let (a, b) = self.comparison_pair(l, r, &format!("operator {sym}"))?;
            let int_like = |t: Option<Type>| matches!(t, Some(Type::Int | Type::Timestamp));
            if int_like(a.ty) && int_like(b.ty) {
                if let Node::Const(Value::Int(k) | Value::Ts(k)) = b.node {
                    return Ok(bool_node(Node::IntCmpK(c, a.boxed(), k)));
                }
                return Ok(bool_node(Node::IntCmp(c, a.boxed(), b.boxed())));
            }
            return Ok(bool_node(Node::Cmp(c, a.boxed(), b.boxed())));
        }
        match op {
            B::And | B::Or => {
                let name = if *op == B::And { "AND" } else { "OR" };
                let a = self.expr(l)?;
                let b = self.expr(r)?;
                let ok = |t: Option<Type>| matches!(t, None | Some(Type::Bool));
                if !ok(a.ty) || !ok(b.ty) {
                    return Err(format!(
                        "operator {name} needs bool operands, got {} and {}",
                        tn(a.ty),
                        tn(b.ty)
                    ));
                }
                let node = if *op == B::And {
                    Node::And(a.boxed(), b.boxed())
                } else {
                    Node::Or(a.boxed(), b.boxed())
                };
                Ok(bool_node(node))
            }
            B::StringConcat => self.concat(l, r),
            B::PGLikeMatch => self.like(l, r, None, false, false),
            B::PGILikeMatch => self.like(l, r, None, true, false),
            B::PGNotLikeMatch => self.like(l, r, None, false, true),
            B::PGNotILikeMatch => self.like(l, r, None, true, true),
            other => Err(format!(
                "operator {other} is not supported in lockstep expressions"
            )),
        }
    }

    fn arith(&mut self, op: ArithOp, l: &ast::Expr, r: &ast::Expr) -> R {
        let a = self.expr(l)?;
        let b = self.expr(r)?;
        // A string literal next to a number takes the number's type, as
        // PostgreSQL types an untyped literal (`i + '1'`).
        let numeric = |t: Option<Type>| {
            matches!(t, Some(Type::Int | Type::Float))
                .then_some(t)
                .flatten()
        };
        let what = format!("operator {}", op.symbol());
        let b = literal_to_number(b, numeric(a.ty), &what)?;
        let a = literal_to_number(a, numeric(b.ty), &what)?;
        let ty = match (a.ty, b.ty) {
            (None, None) => Ok(None),
            (Some(x), Some(y)) => arith_type(op, x, y).map(Some).ok_or(()),
            // NULL takes the other operand's type, or int next to a timestamp.
            (Some(x), None) => arith_type(op, x, x)
                .or_else(|| arith_type(op, x, Type::Int))
                .map(Some)
                .ok_or(()),
            (None, Some(y)) => arith_type(op, y, y)
                .or_else(|| arith_type(op, Type::Int, y))
                .map(Some)
                .ok_or(()),
        };
        let Ok(ty) = ty else {
            let hint = if op == ArithOp::Add
                && (a.ty == Some(Type::String) || b.ty == Some(Type::String))
            {
                " (use || to concatenate strings)"
            } else {
                ""
            };
            return Err(format!(
                "operator {} cannot take {} and {}{hint}",
                op.symbol(),
                tn(a.ty),
                tn(b.ty)
            ));
        };
        if a.ty == Some(Type::Int) && b.ty == Some(Type::Int) {
            if let Node::Const(Value::Int(k)) = b.node {
                return Ok(Typed::new(Node::IntArithK(op, a.boxed(), k), ty));
            }
            return Ok(Typed::new(Node::IntArith(op, a.boxed(), b.boxed()), ty));
        }
        Ok(Typed::new(Node::Arith(op, a.boxed(), b.boxed()), ty))
    }

    /// Compiles both sides of a comparison, converting a string literal on
    /// one side to the other side's type.
    fn comparison_pair(
        &mut self,
        l: &ast::Expr,
        r: &ast::Expr,
        what: &str,
    ) -> Result<(Typed, Typed), String> {
        let a = self.expr(l)?;
        let b = self.expr(r)?;
        let b = literal_as(b, a.ty, what)?;
        let a = literal_as(a, b.ty, what)?;
        if comparable(a.ty, b.ty) {
            Ok((a, b))
        } else {
            Err(format!(
                "{what} cannot compare {} with {}",
                tn(a.ty),
                tn(b.ty)
            ))
        }
    }

    /// Compiles `e` to be compared with `x`.
    pub(crate) fn comparand(&mut self, x: &Typed, e: &ast::Expr, what: &str) -> R {
        let t = self.expr(e)?;
        let t = literal_as(t, x.ty, what)?;
        if comparable(x.ty, t.ty) {
            Ok(t)
        } else {
            Err(format!(
                "{what} cannot compare {} with {}",
                tn(x.ty),
                tn(t.ty)
            ))
        }
    }
}

pub(crate) fn bool_node(node: Node) -> Typed {
    Typed::new(node, Some(Type::Bool))
}

/// Converts a string literal compared with a value of type `target` to that
/// type at compile time (as PostgreSQL types an untyped literal).
fn literal_as(t: Typed, target: Option<Type>, what: &str) -> R {
    match (t.string_literal(), target) {
        (Some(s), Some(to)) if to != Type::String => {
            let s = s.to_owned();
            cast_to(t, to)
                .map_err(|e| format!("{what} cannot compare {to} with {}: {e}", cast::quote(&s)))
        }
        _ => Ok(t),
    }
}

/// Converts a string literal used in arithmetic with a number of type
/// `target` to that type at compile time.
fn literal_to_number(t: Typed, target: Option<Type>, what: &str) -> R {
    match (t.string_literal(), target) {
        (Some(s), Some(to)) => {
            let s = s.to_owned();
            cast_to(t, to)
                .map_err(|e| format!("{what} cannot take {} as {to}: {e}", cast::quote(&s)))
        }
        _ => Ok(t),
    }
}

/// `CAST(x AS to)`; a literal is converted at compile time.
fn cast_to(x: Typed, to: Type) -> R {
    let Some(from) = x.ty else {
        return Ok(Typed::new(x.node, Some(to)));
    };
    let Some(op) = cast::lookup(from, to) else {
        return Err(format!(
            "cannot cast {from} to {to}{}",
            cast::no_cast_hint(from, to)
        ));
    };
    if op == CastOp::Identity {
        return Ok(Typed::new(x.node, Some(to)));
    }
    match x.node {
        Node::Const(v) => cast::apply(op, v)
            .map(|v| Typed::new(Node::Const(v), Some(to)))
            .map_err(|e| e.reason),
        node => Ok(Typed::new(Node::Cast(op, Box::new(node)), Some(to))),
    }
}

/// A name for an unsupported construct.
fn construct_name(e: &ast::Expr) -> &'static str {
    use ast::Expr as A;
    match e {
        A::Subquery(_) | A::InSubquery { .. } | A::Exists { .. } => "a subquery",
        A::InUnnest { .. } => "IN UNNEST",
        A::CompoundFieldAccess { .. } => "field access with [] or .",
        A::JsonAccess { .. } => "JSON access",
        A::IsJson { .. } => "IS JSON",
        A::IsNormalized { .. } => "IS NORMALIZED",
        A::SimilarTo { .. } => "SIMILAR TO",
        A::RLike { .. } => "RLIKE / REGEXP",
        A::AnyOp { .. } | A::AllOp { .. } => "ANY / ALL",
        A::Convert { .. } => "CONVERT",
        A::AtTimeZone { .. } => "AT TIME ZONE",
        A::Extract { .. } => "EXTRACT",
        A::Position { .. } => "POSITION",
        A::Trim { .. } => "TRIM",
        A::Overlay { .. } => "OVERLAY",
        A::Collate { .. } => "COLLATE",
        A::Prefixed { .. } => "a prefixed value",
        A::GroupingSets(_) | A::Cube(_) | A::Rollup(_) => "GROUPING SETS / CUBE / ROLLUP",
        A::Tuple(_) => "a row value (a, b, ...)",
        A::Struct { .. } => "STRUCT",
        A::Named { .. } => "a named expression",
        A::Dictionary(_) | A::Map(_) => "a map literal",
        A::Array(_) => "ARRAY",
        A::Interval(_) => "INTERVAL (timestamps are int milliseconds: write t + 60000)",
        A::MatchAgainst { .. } => "MATCH ... AGAINST",
        A::Wildcard(_) | A::QualifiedWildcard(..) => "* (it is only allowed in count(*))",
        A::OuterJoin(_) => "(+)",
        A::Prior(_) => "PRIOR",
        A::Lambda(_) => "a lambda",
        A::MemberOf(_) => "MEMBER OF",
        _ => "this construct",
    }
}
