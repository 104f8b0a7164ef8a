//! The text form: print and parse are inverses, errors say where, the verifier catches what parsing cannot.

use bertopt_ir::{parse, print, verify};

const SMALL: &str = "graph small(%input_ids: i64[batch, sequence], %attention_mask: i64[batch, sequence], %token_type_ids: i64[batch, sequence]) {
  %0: f32[batch, sequence, 8] = embed(%input_ids, %token_type_ids) {word: @w, position: @p, token_type: @t, ln: @ln, eps: 1e-12, position_offset: 0}
  %1: f32[batch, sequence, 8] = attention(%0, %attention_mask) {heads: 2, head_dim: 4, query: @q, key: @k, value: @v, output: @o}
  %2: f32[batch, sequence, 8] = add_norm(%1, %0) {ln: @ln2, eps: 1e-5}
  %3: f32[batch, sequence, 16] = linear(%2) {w: @ff, k: 8, n: 16}
  %4: f32[batch, sequence, 16] = gelu(%3)
  %5: f32[batch, 16] = take_cls(%4)
  %6: f32[batch, 16] = tanh(%5)
  return last_hidden_state = %4, pooled = %6
}
weights {
  @ff.bias: f32[16]
  @ff.weight: f32[8, 16]
  @k.bias: f32[8]
  @k.weight: f32[8, 8]
  @ln.bias: f32[8]
  @ln.weight: f32[8]
  @ln2.bias: f32[8]
  @ln2.weight: f32[8]
  @o.bias: f32[8]
  @o.weight: f32[8, 8]
  @p: f32[32, 8]
  @q.bias: f32[8]
  @q.weight: f32[8, 8]
  @t: f32[2, 8]
  @v.bias: f32[8]
  @v.weight: f32[8, 8]
  @w: f32[50, 8]
}
";

#[test]
fn print_parse_round_trip_is_exact() {
    let g = parse(SMALL).expect("parses");
    verify(&g).expect("verifies");
    assert_eq!(print(&g), SMALL);
    let again = parse(&print(&g)).expect("reparses");
    assert_eq!(print(&again), SMALL);
    assert_eq!(again.dag.node_count(), 10);
    assert_eq!(again.outputs.len(), 2);
}

#[test]
fn parse_errors_carry_line_and_column() {
    let bad = SMALL
        .replace("%2: f32[batch, sequence, 8] = add_norm(%1, %0)", "%2: f32[batch, sequence, 8] = add_norm(%1, %9)");
    let e = parse(&bad).unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    assert!(e.to_string().contains("undefined value %9"), "{e}");

    let e = parse(&SMALL.replace("gelu(%3)", "swish(%3)")).unwrap_err();
    assert!(e.to_string().contains("unknown op `swish`"), "{e}");
    assert_eq!(e.line, 6);

    let e = parse(&SMALL.replace("eps: 1e-5}", "eps: 1e-5, colour: 3}")).unwrap_err();
    assert!(e.to_string().contains("no attribute `colour`"), "{e}");

    let e = parse(&SMALL.replace("f32[8, 16]", "f32[8, x]")).unwrap_err();
    assert!(e.to_string().contains("fully known shape"), "{e}");

    let e = parse("graph g() {\n  return\n}").unwrap_err();
    assert!(e.to_string().contains("expected a name"), "{e}");
}

#[test]
fn verifier_rejects_wrong_weight_shapes_and_types() {
    // A weight whose shape does not fit the linear's K x N.
    let g = parse(&SMALL.replace("@ff.weight: f32[8, 16]", "@ff.weight: f32[8, 12]")).unwrap();
    let e = verify(&g).unwrap_err().to_string();
    assert!(e.contains("@ff.weight is f32[8, 12], expected f32[8, 16]"), "{e}");

    // A declared value type that disagrees with inference.
    let g = parse(&SMALL.replace("%5: f32[batch, 16] = take_cls", "%5: f32[batch, 15] = take_cls")).unwrap();
    let e = verify(&g).unwrap_err().to_string();
    assert!(e.contains("declared f32[batch, 15] but inferred f32[batch, 16]"), "{e}");

    // Heads x head_dim must match the projections.
    let g = parse(&SMALL.replace("heads: 2, head_dim: 4", "heads: 4, head_dim: 4")).unwrap();
    let e = verify(&g).unwrap_err().to_string();
    assert!(e.contains("@q.weight is f32[8, 8], expected f32[8, 16]"), "{e}");

    // A missing weight.
    let g = parse(&SMALL.replace("  @ln2.bias: f32[8]\n", "")).unwrap();
    assert!(verify(&g).unwrap_err().to_string().contains("@ln2.bias does not exist"));
}

const WITH_DATA: &str = "graph d(%x: f32[batch, 3]) {
  %0: f32[batch, 2] = linear(%x) {w: @l, k: 3, n: 2}
  return y = %0
}
weights {
  @l.bias: f32[2] = [0.5, -1]
  @l.weight: f32[3, 2] = seeded(4)
}
";

#[test]
fn weights_may_carry_literal_or_seeded_data() {
    let g = parse(WITH_DATA).unwrap();
    assert_eq!(g.weights.tensor("l.bias").unwrap().to_vec1::<f32>().unwrap(), vec![0.5, -1.0]);
    let w = g.weights.tensor("l.weight").unwrap().to_vec2::<f32>().unwrap();
    // value k of seed 4 by the documented formula, written out here: ((7k + 12) mod 11 / 11 - 1/2) * (1 + k mod 3)
    let expect = |k: usize| (((7 * k + 12) % 11) as f32 / 11.0 - 0.5) * (1.0 + (k % 3) as f32);
    assert_eq!(w, vec![vec![expect(0), expect(1)], vec![expect(2), expect(3)], vec![expect(4), expect(5)]]);
    // The printer writes types only; the declaration without data parses to the same graph shape.
    assert!(!print(&g).contains("seeded"));
    verify(&g).unwrap();
}

#[test]
fn bad_weight_data_is_located() {
    for (text, needle) in [
        ("@l.bias: f32[2] = [0.5]", "line 6, column 21: @l.bias is f32[2] (2 values) but its data has 1"),
        ("@l.bias: f32[2] = [0.5 1]", "expected `,` or `]` in the data of @l.bias"),
        ("@l.bias: f32[2] = seeded(x)", "seeded(...) takes a whole number"),
        ("@l.bias: f32[2] = random(1)", "expected `seeded`"),
    ] {
        let src = WITH_DATA.replace("@l.bias: f32[2] = [0.5, -1]", text);
        let e = parse(&src).unwrap_err().to_string();
        assert!(e.contains(needle), "{text}: {e}");
    }
}

#[test]
fn verifier_lists_every_problem_with_its_place() {
    use bertopt_ir::verify::Location;
    let bad = SMALL
        .replace("%5: f32[batch, 16] = take_cls", "%5: f32[batch, 15] = take_cls")
        .replace("  @ln2.bias: f32[8]\n", "")
        .replace("pooled = %6", "pooled = %6, pooled = %6");
    let e = verify(&parse(&bad).unwrap()).unwrap_err();
    let at: Vec<&Location> = e.problems.iter().map(|p| &p.at).collect();
    assert_eq!(
        at,
        [
            &Location::Value("%2".into()),
            &Location::Value("%5".into()),
            &Location::Value("%6".into()),
            &Location::Output("pooled".into())
        ],
        "{e}"
    );
    assert!(e.problems[0].message.contains("@ln2.bias does not exist"), "{e}");
    // %6 = tanh(%5) inherits the wrong width: a problem of its own.
    assert!(e.problems[2].message.contains("%6 = tanh: declared f32[batch, 16] but inferred f32[batch, 15]"), "{e}");
    assert!(e.problems[3].message.contains("output `pooled` declared twice"), "{e}");
    // The message names the graph and joins the problems in that order.
    let text = e.to_string();
    assert!(text.starts_with("IR verification failed in graph `small`: %2 = add_norm"), "{text}");
}

const EXIT: &str = "graph e(%x: f32[batch, 3]) {
  %0: f32[batch, 2] = linear(%x) {w: @a, k: 3, n: 2}
  %1: f32[batch, 2] = linear(%x) {w: @b, k: 3, n: 2}
  %2: f32[batch, 2], %3: i64[batch] = early_exit(%0, %1) {entropy: 0.5, layers: [1, 2]}
  return logits = %2, exit_layer = %3
}
weights {
  @a.bias: f32[2] = [0, 0]
  @a.weight: f32[3, 2] = [10, -10, 10, -10, 10, -10]
  @b.bias: f32[2] = [1, 2]
  @b.weight: f32[3, 2] = [0, 0, 0, 0, 0, 0]
}
";

/// `early_exit` has two results, named on one line; they print, parse, verify and evaluate as two values.
#[test]
fn an_op_with_two_results_round_trips_and_evaluates_both() {
    let g = parse(EXIT).unwrap();
    verify(&g).unwrap();
    assert_eq!(parse(&print(&g)).map(|g| print(&g)).unwrap(), print(&g));
    assert!(print(&g).contains("%2: f32[batch, 2], %3: i64[batch] = early_exit(%0, %1)"), "{}", print(&g));
    let x = candle_core::Tensor::new(&[[1f32, 1., 1.], [2., 0., 1.]], &candle_core::Device::Cpu).unwrap();
    let run = |g: &bertopt_ir::Graph| {
        let out = bertopt_ir::interp::run(g, &[("x".to_string(), x.clone())].into()).unwrap();
        (out[0].1.to_vec2::<f32>().unwrap(), out[1].1.to_vec1::<i64>().unwrap())
    };
    // Exit 0's logits are (30, -30) and (30, -30): entropy ~0 < 0.5, the batch leaves after layer 1.
    assert_eq!(run(&g), (vec![vec![30., -30.]; 2], vec![1, 1]));
    // With threshold 0 nothing leaves early: the final logits (the bias of @b) after layer 2.
    let g0 = parse(&EXIT.replace("entropy: 0.5", "entropy: 0")).unwrap();
    assert_eq!(run(&g0), (vec![vec![1., 2.]; 2], vec![2, 2]));
    // A wrong declared type of the second result is caught, with both results shown.
    let e = verify(&parse(&EXIT.replace("%3: i64[batch]", "%3: f32[batch]")).unwrap()).unwrap_err().to_string();
    assert!(e.contains("declared f32[batch, 2], f32[batch] but inferred f32[batch, 2], i64[batch]"), "{e}");
}

/// An attention's projection forms are part of the op: the verifier holds them against the weights, and the
/// parser wants one count per projection.
#[test]
fn attention_declares_its_projection_forms() {
    let tiled = SMALL.replace("output: @o}", "output: @o, tiles: [1, 0, 0, 0]}");
    let e = verify(&parse(&tiled).unwrap()).unwrap_err().to_string();
    assert!(e.contains("@q is declared 1 tile(s) but its weights hold dense"), "{e}");
    // Stored as one tile (the rows it keeps), declared dense: caught the other way round.
    let rows = SMALL.replace("  @q.weight: f32[8, 8]\n", "  @q.tile0.rows: i64[5]\n  @q.tile0.weight: f32[5, 8]\n");
    let e = verify(&parse(&rows).unwrap()).unwrap_err().to_string();
    assert!(e.contains("@q is declared dense but its weights hold 1 tile(s)"), "{e}");
    // Declared as it is stored: verifies, and prints the counts.
    let both = rows.replace("output: @o}", "output: @o, tiles: [1, 0, 0, 0]}");
    let g = parse(&both).unwrap();
    verify(&g).unwrap();
    assert!(print(&g).contains("output: @o, tiles: [1, 0, 0, 0]}"), "{}", print(&g));
    let e = parse(&SMALL.replace("output: @o}", "output: @o, tiles: [1, 0]}")).unwrap_err().to_string();
    assert!(e.contains("4 counts, got [1, 0]"), "{e}");
}
