//! The special forms of the compiler: `IN`, `LIKE`, `||`, `CASE`, function
//! calls and literals.

use sqlparser::ast::{
    self, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart, Value as AV,
};

use super::cast;
use super::compile::{bool_node, tn, unify, Compiler, Typed, R};
use super::eval::{cmp_values, Node};
use super::func;
use super::like::Pattern;
use crate::suggest;
use crate::value::{Type, Value};

/// An `IN` list of at least this many literals is searched by bisection.
const SORTED_IN_MIN: usize = 8;

impl Compiler<'_> {
    pub(crate) fn in_list(&mut self, e: &ast::Expr, list: &[ast::Expr], negated: bool) -> R {
        let x = self.expr(e)?;
        let mut items = Vec::with_capacity(list.len());
        for item in list {
            items.push(self.comparand(&x, item, "IN")?.node);
        }
        let consts: Option<Vec<&Value>> = items
            .iter()
            .map(|n| match n {
                Node::Const(v) => Some(v),
                _ => None,
            })
            .collect();
        if let Some(consts) = consts.filter(|c| c.len() >= SORTED_IN_MIN) {
            let has_null = consts.iter().any(|v| v.is_null());
            let mut vals: Vec<Value> = consts
                .into_iter()
                .filter(|v| !v.is_null())
                .cloned()
                .collect();
            let one_type = vals
                .windows(2)
                .all(|w| std::mem::discriminant(&w[0]) == std::mem::discriminant(&w[1]));
            if one_type {
                vals.sort_by(cmp_values);
                return Ok(bool_node(Node::InSorted {
                    expr: x.boxed(),
                    items: vals,
                    has_null,
                    negated,
                }));
            }
        }
        Ok(bool_node(Node::In {
            expr: x.boxed(),
            items,
            negated,
        }))
    }

    pub(crate) fn like(
        &mut self,
        expr: &ast::Expr,
        pattern: &ast::Expr,
        escape: Option<&ast::Expr>,
        ci: bool,
        negated: bool,
    ) -> R {
        let what = if ci { "ILIKE" } else { "LIKE" };
        let x = self.expr(expr)?;
        let p = self.expr(pattern)?;
        if !matches!(x.ty, None | Some(Type::String)) || !matches!(p.ty, None | Some(Type::String))
        {
            return Err(format!(
                "{what} needs strings, got {} {what} {} (CAST the value to string first)",
                tn(x.ty),
                tn(p.ty)
            ));
        }
        let escape = match escape {
            None => Some('\\'),
            Some(e) => {
                let t = self.expr(e)?;
                let Some(s) = t.string_literal() else {
                    return Err("ESCAPE needs a string literal".into());
                };
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (None, _) => None,
                    (Some(c), None) => Some(c),
                    _ => {
                        return Err(format!(
                            "ESCAPE needs one character (or '' for none), got {}",
                            cast::quote(s)
                        ))
                    }
                }
            }
        };
        let node = match p.string_literal() {
            Some(pat) => Node::Like {
                expr: x.boxed(),
                pattern: Pattern::new(pat, escape, ci)?,
                negated,
            },
            None => Node::LikeDyn {
                expr: x.boxed(),
                pattern: p.boxed(),
                escape,
                ci,
                negated,
            },
        };
        Ok(bool_node(node))
    }

    pub(crate) fn concat(&mut self, l: &ast::Expr, r: &ast::Expr) -> R {
        let a = self.expr(l)?;
        let b = self.expr(r)?;
        let stringy = |t: Option<Type>| matches!(t, None | Some(Type::String));
        if !stringy(a.ty) && !stringy(b.ty) {
            return Err(format!(
                "operator || needs a string operand, got {} and {} (CAST one to string)",
                tn(a.ty),
                tn(b.ty)
            ));
        }
        let to_str = |t: Typed| -> Typed {
            match t.ty {
                Some(ty) if ty != Type::String => Typed::new(
                    Node::Cast(cast::to_string_op(ty), t.boxed()),
                    Some(Type::String),
                ),
                _ => t,
            }
        };
        let (a, b) = (to_str(a), to_str(b));
        Ok(Typed::new(
            Node::Concat(a.boxed(), b.boxed()),
            Some(Type::String),
        ))
    }

    pub(crate) fn case(
        &mut self,
        operand: Option<&ast::Expr>,
        conditions: &[ast::CaseWhen],
        else_result: Option<&ast::Expr>,
    ) -> R {
        let operand = operand.map(|o| self.expr(o)).transpose()?;
        let mut whens = Vec::with_capacity(conditions.len());
        let mut results = Vec::with_capacity(conditions.len() + 1);
        for cw in conditions {
            let w = match &operand {
                Some(o) => self.comparand(o, &cw.condition, "CASE")?,
                None => self.bool_operand(&cw.condition, "CASE WHEN")?,
            };
            whens.push(w.node);
            results.push(self.expr(&cw.result)?);
        }
        let otherwise = match else_result {
            Some(e) => self.expr(e)?,
            None => Typed::new(Node::Const(Value::Null), None),
        };
        results.push(otherwise);
        let types: Vec<Option<Type>> = results.iter().map(|t| t.ty).collect();
        let ty = unify(&types)
            .map_err(|(a, b)| format!("CASE branches must have one type, got {a} and {b}"))?;
        let mut results: Vec<Node> = results.into_iter().map(|t| t.coerce(ty).node).collect();
        let otherwise = results.pop().unwrap_or(Node::Const(Value::Null));
        Ok(Typed::new(
            Node::Case {
                operand: operand.map(Typed::boxed),
                whens: whens.into_iter().zip(results).collect(),
                otherwise: Box::new(otherwise),
            },
            ty,
        ))
    }

    pub(crate) fn function(&mut self, f: &ast::Function) -> R {
        let (name, written) = match f.name.0.as_slice() {
            [ObjectNamePart::Identifier(id)] => (id.value.to_lowercase(), id.value.as_str()),
            _ => {
                return Err(format!(
                    "qualified function names like {} are not supported",
                    f.name
                ))
            }
        };
        // SQL parses some keywords written without parentheses (`user`,
        // `current_date`) as niladic functions; a field of that name wins.
        if matches!(f.args, FunctionArguments::None) && f.over.is_none() {
            if let Ok(found) = self.field(std::slice::from_ref(&written.to_string())) {
                return Ok(found);
            }
        }
        if let Some(why) = func::impure(&name) {
            return Err(format!("lockstep expressions are pure: {name}() {why}"));
        }
        if func::is_aggregate(&name) {
            return Err(format!(
                "{name}() is an aggregate: aggregates go in the \"aggregate\" field of an \
                 aggregate or window node, not in an expression"
            ));
        }
        if !func::FUNCTIONS.contains(&name.as_str()) {
            return Err(format!(
                "unknown function \"{written}\"{}",
                suggest::hint(&name, func::FUNCTIONS)
            ));
        }
        if f.over.is_some() {
            return Err(format!(
                "{name}() OVER (...): window functions are not supported"
            ));
        }
        if f.filter.is_some() || !f.within_group.is_empty() || f.null_treatment.is_some() {
            return Err(format!(
                "{name}(): FILTER, WITHIN GROUP and NULLS clauses are not supported"
            ));
        }
        if !matches!(f.parameters, FunctionArguments::None) {
            return Err(format!(
                "{name}(): parametric function calls are not supported"
            ));
        }
        let list = match &f.args {
            FunctionArguments::List(l) => l,
            FunctionArguments::None => {
                return Err(format!("{name} needs parentheses: {name}(...)"))
            }
            FunctionArguments::Subquery(_) => return Err("subqueries are not supported".into()),
        };
        if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
            return Err(format!(
                "{name}(): DISTINCT, ORDER BY and other clauses are not supported"
            ));
        }
        let mut args = Vec::with_capacity(list.args.len());
        for a in &list.args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(self.expr(e)?),
                FunctionArg::Unnamed(_) => {
                    return Err(format!("{name}(): * is only allowed in count(*)"))
                }
                _ => return Err(format!("{name}(): named arguments are not supported")),
            }
        }
        func::compile_call(&name, args)
    }
}

/// A literal value.
pub(crate) fn literal(v: &AV, negative: bool) -> R {
    let s = |s: &str| Ok(Typed::new(Node::Const(Value::str(s)), Some(Type::String)));
    match v {
        AV::Number(n, _) => number(n, negative),
        AV::SingleQuotedString(x)
        | AV::EscapedStringLiteral(x)
        | AV::UnicodeStringLiteral(x)
        | AV::NationalStringLiteral(x) => s(x),
        AV::DollarQuotedString(d) => s(&d.value),
        AV::Boolean(b) => Ok(Typed::new(Node::Const(Value::Bool(*b)), Some(Type::Bool))),
        AV::Null => Ok(Typed::new(Node::Const(Value::Null), None)),
        AV::Placeholder(p) => Err(format!(
            "placeholder {p} is not supported: write the value itself"
        )),
        AV::DoubleQuotedString(x) => Err(format!(
            "\"{x}\" is a double-quoted string; strings take single quotes"
        )),
        other => Err(format!("literal {other} is not supported")),
    }
}

/// A numeric literal: an int unless it has a decimal point or an exponent.
pub(crate) fn number(text: &str, negative: bool) -> R {
    let digits: String = text.chars().filter(|&c| c != '_').collect();
    let signed = if negative {
        format!("-{digits}")
    } else {
        digits.clone()
    };
    if digits.contains(['.', 'e', 'E']) {
        match signed.parse::<f64>() {
            Ok(f) if f.is_finite() => {
                Ok(Typed::new(Node::Const(Value::Float(f)), Some(Type::Float)))
            }
            Ok(_) => Err(format!("float literal {signed} is out of range")),
            Err(_) => Err(format!("invalid number {signed}")),
        }
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        signed
            .parse::<i64>()
            .map(|i| Typed::new(Node::Const(Value::Int(i)), Some(Type::Int)))
            .map_err(|_| {
                format!(
                    "integer literal {signed} is out of range for int \
                     (-9223372036854775808 to 9223372036854775807); \
                     write it with a decimal point for a float"
                )
            })
    } else {
        Err(format!("invalid number {signed}"))
    }
}
