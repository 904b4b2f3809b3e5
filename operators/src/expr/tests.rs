//! Unit tests of the expression compiler and evaluator (the table in
//! docs/expressions.md, run by tests/expr_table.rs, covers the semantics).

use crate::value::Text;

use proptest::prelude::*;

use super::*;

fn schema() -> Schema {
    Schema::new([
        ("i", Type::Int),
        ("f", Type::Float),
        ("s", Type::String),
        ("n", Type::Int),
        ("b", Type::Bool),
        ("t", Type::Timestamp),
        ("j", Type::Json),
    ])
}

fn row() -> Vec<Value> {
    vec![
        Value::Int(7),
        Value::Float(2.5),
        Value::str("Hello"),
        Value::Null,
        Value::Bool(true),
        Value::Ts(1_700_000_000_000),
        Value::Json(Text::from("{\"a\":1}")),
    ]
}

fn ok(src: &str) -> Expr {
    compile(src, &schema()).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn err(src: &str) -> String {
    match compile(src, &schema()) {
        Ok(e) => panic!("{src} compiled: {e:?}"),
        Err(e) => e.message,
    }
}

fn run(src: &str) -> Result<Value, EvalError> {
    ok(src).eval(&row())
}

#[test]
fn expr_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Expr>();
    check::<ExprError>();
    check::<EvalError>();
}

#[test]
fn syntax_errors_have_positions() {
    let m = err("i b");
    assert!(
        m.contains("unexpected \"b\"") && m.contains("at column 3"),
        "{m}"
    );
    let m = err("i = 1 j = 2");
    assert!(m.contains("at column 7"), "{m}");
    let m = err("1 +");
    assert!(m.starts_with("syntax error: expected an expression"), "{m}");
    let m = err("(1 + 2");
    assert!(m.starts_with("syntax error"), "{m}");
    let m = err("'abc");
    assert!(m.contains("Unterminated string literal at column 1"), "{m}");
    let m = err("i +\n  ?");
    assert!(m.contains("at line 2, column 3"), "{m}");
    assert_eq!(err("   "), "empty expression");
    assert!(err("i = 1;").contains("unexpected \";\""));
}

#[test]
fn nesting_and_length_limits_are_errors_not_crashes() {
    let deep = vec!["1"; 1000].join("+");
    assert!(err(&deep).contains("nested too deeply"));
    let parens = format!("{}1{}", "(".repeat(300), ")".repeat(300));
    assert!(
        err(&parens).contains("nested too deeply"),
        "{}",
        err(&parens)
    );
    let long = vec!["1"; 6000].join("+");
    assert!(err(&long).contains("too long"));
    let casts = format!("i{}", "::int".repeat(3000));
    assert!(err(&casts).contains("nested too deeply"));
    // Wide is fine: a long IN list.
    let list: Vec<String> = (0..2000).map(|k| k.to_string()).collect();
    let e = ok(&format!("i IN ({})", list.join(",")));
    assert_eq!(e.eval(&row()), Ok(Value::Bool(true)));
    // Just under the depth limit works.
    let ok_deep = vec!["1"; 150].join("+");
    assert_eq!(run(&ok_deep), Ok(Value::Int(150)));
}

#[test]
fn static_types() {
    assert_eq!(ok("NULL").ty(), None);
    assert_eq!(ok("NULL + NULL").ty(), None);
    assert_eq!(ok("CAST(NULL AS int)").ty(), Some(Type::Int));
    assert_eq!(ok("i + NULL").ty(), Some(Type::Int));
    assert_eq!(ok("t - NULL").ty(), Some(Type::Int));
    assert_eq!(ok("t + NULL").ty(), Some(Type::Timestamp));
    assert_eq!(
        ok("CASE WHEN b THEN 1 ELSE 2.5 END").ty(),
        Some(Type::Float)
    );
    assert_eq!(ok("CASE WHEN b THEN NULL END").ty(), None);
    assert_eq!(ok("coalesce(n, f)").ty(), Some(Type::Float));
    assert_eq!(ok("i = NULL").ty(), Some(Type::Bool));
    assert_eq!(ok("NULL || NULL").ty(), Some(Type::String));
    assert_eq!(ok("abs(NULL)").ty(), None);
    assert_eq!(ok("t").ty(), Some(Type::Timestamp));
}

#[test]
fn predicates() {
    let r = row();
    assert_eq!(ok("n > 1").eval_predicate(&r), Ok(false));
    assert_eq!(ok("i > 1").eval_predicate(&r), Ok(true));
    assert_eq!(ok("NULL").eval_predicate(&r), Ok(false));
    assert!(ok("i").eval_predicate(&r).is_err());
    assert!(compile_predicate("i + 1", &schema(), "WHERE")
        .unwrap_err()
        .message
        .contains("WHERE needs a bool, got int"));
    assert!(compile_predicate("i > 1", &schema(), "WHERE").is_ok());
}

#[test]
fn rows_that_do_not_match_the_schema_are_errors() {
    let e = ok("i + 1");
    assert!(e.eval(&[]).is_err());
    assert!(e.eval(&[Value::str("x")]).is_err());
    assert!(ok("b AND b").eval(&[]).is_err());
    let wrong: Vec<Value> = row().into_iter().map(|_| Value::str("x")).collect();
    for src in [
        "i + 1",
        "-f",
        "b AND b",
        "lower(s)",
        "CAST(i AS string)",
        "s LIKE 'a%'",
        "t - 1",
    ] {
        let e = ok(src);
        let _ = e.eval(&wrong);
    }
    let ints: Vec<Value> = row().into_iter().map(|_| Value::Int(1)).collect();
    assert!(ok("s LIKE 'a%'").eval(&ints).is_err());
    assert!(ok("upper(s)").eval(&ints).is_err());
}

struct JoinScope;

impl Resolve for JoinScope {
    fn resolve(&self, parts: &[String]) -> Result<(usize, Type), String> {
        match parts {
            [side, f] if side == "left" && f == "x" => Ok((0, Type::Int)),
            [side, f] if side == "right" && f == "x" => Ok((1, Type::Int)),
            _ => Err(format!("no {}", parts.join("."))),
        }
    }
}

#[test]
fn compound_identifiers_go_to_the_scope() {
    let e = compile("left.x + right.x", &JoinScope).unwrap();
    assert_eq!(e.eval(&[Value::Int(1), Value::Int(2)]), Ok(Value::Int(3)));
    let e = compile("\"left\".\"x\" * 2", &JoinScope).unwrap();
    assert_eq!(e.eval(&[Value::Int(4), Value::Int(2)]), Ok(Value::Int(8)));
    assert_eq!(
        compile("left.y", &JoinScope).unwrap_err().message,
        "no left.y"
    );
}

#[test]
fn schema_resolution_messages() {
    let s = Schema::new([("bytes", Type::Int), ("url", Type::String)]);
    assert_eq!(
        compile("byte > 1", &s).unwrap_err().message,
        "unknown field \"byte\" (did you mean \"bytes\"?)"
    );
    assert_eq!(
        compile("zzzzzz", &s).unwrap_err().message,
        "unknown field \"zzzzzz\" (the input has: bytes, url)"
    );
    assert!(compile("a.bytes", &s).is_err());
    assert!(compile("Bytes", &s)
        .unwrap_err()
        .message
        .contains("did you mean \"bytes\""));
    assert!(compile("x", &Schema::default())
        .unwrap_err()
        .message
        .contains("no fields"));
}

#[test]
fn literal_patterns_are_precompiled() {
    assert!(matches!(ok("s LIKE 'H%'").node, Node::Like { .. }));
    assert!(matches!(ok("s LIKE s").node, Node::LikeDyn { .. }));
    assert!(err("s LIKE 'a\\'").contains("must not end with escape"));
    assert_eq!(
        ok("s LIKE s || '\\'").eval(&row()).unwrap_err().reason,
        "LIKE pattern must not end with escape character"
    );
}

#[test]
fn long_literal_in_lists_bisect_like_the_linear_scan() {
    let items = "1, 3, 5, 7, 9, 11, 13, 15, 2.5";
    let sorted = ok(&format!("i IN ({items})"));
    assert!(matches!(sorted.node, Node::In { .. })); // mixed types: linear
    let ints = "1, 3, 5, 7, 9, 11, 13, 15, NULL";
    let e = ok(&format!("i IN ({ints})"));
    assert!(matches!(e.node, Node::InSorted { .. }));
    for (x, want) in [
        (7, Value::Bool(true)),
        (15, Value::Bool(true)),
        (8, Value::Null),
        (-1, Value::Null),
    ] {
        let mut r = row();
        r[0] = Value::Int(x);
        assert_eq!(e.eval(&r), Ok(want.clone()), "{x}");
    }
    let e = ok("f NOT IN (1, 2, 3, 4, 5, 6, 7, 8)");
    assert_eq!(e.eval(&row()), Ok(Value::Bool(true)));
    let e = ok("t IN (1, 2, 3, 4, 5, 6, 7, 1700000000000)");
    assert!(matches!(e.node, Node::InSorted { .. }));
    assert_eq!(e.eval(&row()), Ok(Value::Bool(true)));
}

#[test]
fn folding_literal_casts_reports_failures_at_compile_time() {
    assert!(err("CAST('abc' AS int)").contains("cannot cast 'abc' to int"));
    assert!(err("TIMESTAMP 'yesterday'").contains("cannot cast 'yesterday' to timestamp"));
    assert_eq!(
        run("TIMESTAMP '2023-11-14T22:13:20Z'"),
        Ok(Value::Ts(1_700_000_000_000))
    );
    assert!(err("t > 'soon'").contains("cannot compare timestamp with 'soon'"));
}

#[test]
fn error_order_is_left_to_right_with_short_circuit() {
    assert_eq!(run("b OR 1 / 0 = 1"), Ok(Value::Bool(true)));
    assert_eq!(run("NOT b AND 1 / 0 = 1"), Ok(Value::Bool(false)));
    assert!(run("n > 0 AND 1 / 0 = 1").is_err());
    assert_eq!(run("CASE WHEN b THEN 1 ELSE 1 / 0 END"), Ok(Value::Int(1)));
    assert_eq!(run("coalesce(i, 1 / 0)"), Ok(Value::Int(7)));
    assert_eq!(run("n IN (1 / 0)"), Ok(Value::Null));
}

#[test]
fn every_unsupported_construct_is_a_compile_error() {
    for src in [
        "(SELECT 1)",
        "EXISTS (SELECT 1)",
        "i IN (SELECT 1)",
        "ARRAY[1]",
        "(1, 2)",
        "INTERVAL '1 day'",
        "EXTRACT(year FROM t)",
        "TRIM(s)",
        "POSITION('a' IN s)",
        "s SIMILAR TO 'a'",
        "s ~ 'a'",
        "j -> 'a'",
        "j ->> 'a'",
        "i = ANY(i)",
        "t AT TIME ZONE 'UTC'",
        "s COLLATE \"C\"",
        "$1",
        "X'1F'",
        "B'01'",
        "count(*)",
        "sum(i)",
        "lower(s) OVER ()",
        "count(DISTINCT i)",
        "lower(x => s)",
        "pg_catalog.lower(s)",
        "TRY_CAST(s AS int)",
        "CAST(s AS date)",
        "CAST(s AS varchar(3))",
        "CAST(f AS numeric(10, 2))",
        "CAST(i AS int[])",
        "i & 1",
        "i << 1",
        "i ^ 2",
        "|/ f",
        "~i",
        "s LIKE ANY ('a')",
        "ceil(f, 2)",
        "1e400",
        "now()",
        "current_timestamp",
        "random()",
        "current_user",
        "*",
        "i DIV 2",
        "s IS JSON",
    ] {
        let m = err(src);
        assert!(!m.is_empty(), "{src}");
    }
    assert!(err("now()").starts_with("lockstep expressions are pure: now() reads the clock"));
    assert!(err("CURRENT_DATE").starts_with("lockstep expressions are pure"));
    assert!(err("random()").contains("random source"));
    assert!(err("lowr(s)").contains("unknown function \"lowr\" (did you mean \"lower\"?)"));
    assert!(err("sum(i)").contains("aggregate"));
}

/// Random but syntactically plausible expressions.
fn expr_strategy() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "i",
        "f",
        "s",
        "n",
        "b",
        "t",
        "j",
        "NULL",
        "0",
        "-1",
        "7",
        "2.5",
        "-0.0",
        "'x'",
        "''",
        "'1'",
        "'%a_'",
        "TRUE",
        "9223372036854775807",
        "-9223372036854775808",
        "'NaN'",
        "'2023-11-14T22:13:20Z'",
        "'{\"a\":[1]}'",
        "1e308",
    ]);
    let leaf = atoms.prop_map(str::to_owned);
    leaf.prop_recursive(4, 24, 3, |inner| {
        let ops = prop::sample::select(vec![
            "+",
            "-",
            "*",
            "/",
            "%",
            "=",
            "<>",
            "<",
            ">=",
            "AND",
            "OR",
            "||",
            "LIKE",
            "ILIKE",
            "IS DISTINCT FROM",
        ]);
        let funcs = prop::sample::select(vec![
            "lower", "upper", "length", "abs", "round", "floor", "ceil", "coalesce", "substr",
        ]);
        let types =
            prop::sample::select(vec!["int", "float", "string", "bool", "timestamp", "json"]);
        prop_oneof![
            (inner.clone(), ops, inner.clone()).prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            (funcs, prop::collection::vec(inner.clone(), 1..4))
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            (inner.clone(), types).prop_map(|(a, t)| format!("CAST({a} AS {t})")),
            inner.clone().prop_map(|a| format!("NOT {a}")),
            inner.clone().prop_map(|a| format!("-{a}")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("CASE WHEN {a} THEN {b} ELSE {c} END")),
            (inner.clone(), prop::collection::vec(inner.clone(), 1..4))
                .prop_map(|(a, l)| format!("{a} IN ({})", l.join(", "))),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(a, b, c)| format!("{a} BETWEEN {b} AND {c}")),
        ]
    })
}

fn value_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)].prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        ".{0,6}".prop_map(|s: String| Value::str(&s)),
        any::<i64>().prop_map(Value::Ts),
        Just(Value::Json(Text::from("{\"a\":1}"))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn compile_never_panics_on_any_text(src in ".{0,40}") {
        let _ = compile(&src, &schema());
    }

    #[test]
    fn compile_never_panics_on_sql_like_text(
        parts in prop::collection::vec(prop::sample::select(vec![
            "i", "s", "(", ")", "+", "-", "*", "/", "'a'", "1", "2.5", "NULL", "AND", "NOT",
            "CASE", "WHEN", "THEN", "ELSE", "END", "IN", "LIKE", "ESCAPE", "BETWEEN", "::", "int",
            ",", "CAST", "AS", "IS", "lower", "substr", "||", "=", "<", "$1", "?", "[", "]",
            "TRUE", "OVER", "DISTINCT", "FROM", "SELECT", "INTERVAL", "TIMESTAMP",
        ]), 0..16)
    ) {
        let _ = compile(&parts.join(" "), &schema());
    }

    #[test]
    fn eval_never_panics(
        src in expr_strategy(),
        vals in prop::collection::vec(value_strategy(), 0..9),
    ) {
        if let Ok(e) = compile(&src, &schema()) {
            // A row of the schema's types.
            let r = row();
            let _ = e.eval(&r);
            let _ = e.eval_predicate(&r);
            // And arbitrary rows, which need not match the schema.
            let _ = e.eval(&vals);
            let _ = e.eval_predicate(&vals);
        }
    }

    #[test]
    fn results_have_the_static_type(src in expr_strategy(), i in any::<i64>(), f in any::<f64>()) {
        if let Ok(e) = compile(&src, &schema()) {
            let mut r = row();
            r[0] = Value::Int(i);
            r[1] = Value::Float(f);
            if let Ok(v) = e.eval(&r) {
                let vt = match &v {
                    Value::Null => None,
                    Value::Bool(_) => Some(Type::Bool),
                    Value::Int(_) => Some(Type::Int),
                    Value::Float(_) => Some(Type::Float),
                    Value::Str(_) => Some(Type::String),
                    Value::Ts(_) => Some(Type::Timestamp),
                    Value::Json(_) => Some(Type::Json),
                };
                if vt.is_some() {
                    prop_assert_eq!(vt, e.ty(), "{} gave {:?}", src, v);
                }
            }
        }
    }
}

/// The deepest expressions the compiler accepts fit in a small stack (release
/// builds need about 128 KiB for 200 levels), far below a thread's 2 MiB.
#[test]
fn the_deepest_expressions_fit_in_a_small_stack() {
    let kb = if cfg!(debug_assertions) { 4096 } else { 512 };
    let cases = [
        vec!["i"; 199].join("+"),
        vec!["b"; 199].join(" OR "),
        format!("i{}", "::int::float".repeat(99)),
        format!("{}1{}", "CASE WHEN b THEN ".repeat(45), " END".repeat(45)),
        format!("{}i{}", "abs(".repeat(45), ")".repeat(45)),
    ];
    std::thread::Builder::new()
        .stack_size(kb * 1024)
        .spawn(move || {
            for src in cases {
                let e = ok(&src);
                assert!(e.eval(&row()).is_ok(), "{src}");
                let _ = e.clone();
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn keywords_that_sql_parses_as_functions_resolve_to_fields_first() {
    use crate::value::{Schema, Type, Value};
    let s = Schema::new([("user", Type::String), ("current_date", Type::Int)]);
    let e = super::compile("upper(user) || current_date", &s).expect("compiles");
    assert_eq!(
        e.eval(&[Value::str("ann"), Value::Int(3)]).expect("eval"),
        Value::str("ANN3")
    );
    // Without such a field, the keyword is still refused as impure.
    let none = Schema::new([("x", Type::Int)]);
    assert!(super::compile("user", &none)
        .unwrap_err()
        .message
        .contains("pure"));
}
