//! Head-mask readers: SMP's pickles (numpy 1.x and 2.x flavours) equal their JSON twins; other formats read the
//! same; foreign, corrupt and ragged files are rejected with a message naming the file.

use std::path::{Path, PathBuf};

use bertopt_passes::mask::HeadMask;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smp").join(name)
}

fn err_of(path: &Path) -> String {
    match HeadMask::read(path) {
        Ok(m) => panic!("{} read as {m:?}, expected an error", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_smp_pickle_equals_its_json_twin() {
    for (stem, layers, kept) in [
        ("head_mask_bert_base_l12_h12_ratio0.5", 12, 72),
        ("head_mask_minilm_l6_h12_ratio0.5", 6, 36),
        ("head_mask_minilm_l6_h12_ratio0.25", 6, 54),
    ] {
        let json = HeadMask::read(&fixture(&format!("{stem}.json"))).unwrap();
        assert_eq!((json.layers(), json.heads(), json.kept()), (layers, 12, kept), "{stem}");
        for flavour in ["np1", "np2"] {
            let m = HeadMask::read(&fixture(&format!("{stem}.{flavour}.bin"))).unwrap();
            assert_eq!(m, json, "{stem}.{flavour}");
        }
    }
}

#[test]
fn npy_and_safetensors_masks_read_the_same() {
    let json = HeadMask::read(&fixture("head_mask_minilm_l6_h12_ratio0.5.json")).unwrap();
    let flat: Vec<u8> = json.keep.iter().flatten().map(|&k| k as u8).collect();
    let d = tempfile::tempdir().unwrap();

    // .npy, bool, version 1.0, header padded as numpy pads it
    let mut header = "{'descr': '|b1', 'fortran_order': False, 'shape': (6, 12), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    npy.extend_from_slice(&flat);
    std::fs::write(d.path().join("m.npy"), &npy).unwrap();
    assert_eq!(HeadMask::read(&d.path().join("m.npy")).unwrap(), json);

    // .npy of float32 0/1
    let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (6, 12), }\n".to_string();
    header.insert_str(header.len() - 1, "   ");
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    for &k in &flat {
        npy.extend_from_slice(&(k as f32).to_le_bytes());
    }
    std::fs::write(d.path().join("f.npy"), &npy).unwrap();
    assert_eq!(HeadMask::read(&d.path().join("f.npy")).unwrap(), json);

    // safetensors with one u8 tensor
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![6, 12], &flat).unwrap();
    let bytes = safetensors::serialize([("head_mask", view)], None).unwrap();
    std::fs::write(d.path().join("m.safetensors"), bytes).unwrap();
    assert_eq!(HeadMask::read(&d.path().join("m.safetensors")).unwrap(), json);

    // JSON written by to_json reads back
    std::fs::write(d.path().join("m.json"), json.to_json()).unwrap();
    assert_eq!(HeadMask::read(&d.path().join("m.json")).unwrap(), json);
}

#[test]
fn foreign_and_corrupt_pickles_are_refused_without_running_anything() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("evil.bin");
    // pickle protocol 3 of os.system('ls'): GLOBAL 'os system', the argument tuple, REDUCE.
    std::fs::write(&p, b"\x80\x03cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.").unwrap();
    let e = err_of(&p);
    assert!(e.contains("refusing global os.system"), "{e}");
    assert!(e.contains("evil.bin"), "{e}");

    let good = std::fs::read(fixture("head_mask_minilm_l6_h12_ratio0.5.np2.bin")).unwrap();
    std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    assert!(err_of(&p).contains("truncated pickle"), "{}", err_of(&p));

    // a numpy scalar of another dtype ('i8' instead of 'b1')
    let np1 = std::fs::read(fixture("head_mask_minilm_l6_h12_ratio0.5.np1.bin")).unwrap();
    let swapped: Vec<u8> = {
        let at = np1.windows(2).position(|w| w == b"b1").unwrap();
        let mut v = np1.clone();
        v[at] = b'i';
        v[at + 1] = b'8';
        v
    };
    std::fs::write(&p, swapped).unwrap();
    assert!(err_of(&p).contains("is not the bool dtype"), "{}", err_of(&p));

    // an opcode SMP never writes (a float, BINFLOAT 'G') where a bool is expected
    std::fs::write(&p, b"\x80\x03]q\x00G?\xf0\x00\x00\x00\x00\x00\x00a.").unwrap();
    assert!(err_of(&p).contains("unsupported pickle opcode 0x47"), "{}", err_of(&p));
}

/// An .npy whose element count fits but whose byte count does not (2^61 + 1 float64s) is refused, not a panic.
/// The second input is the crash `scripts/fuzz` found (target head_mask), kept as it was found.
#[test]
fn an_npy_shape_whose_byte_size_overflows_is_refused() {
    let found = b"\x93NUMPY\x01\x00v\x00{'d%scr'> '<i8', 'ft'descr': '<i8', 'fortran_order': False, 'shape': (2, \
                  000000000000000000000000002000000000000000000000\x00";
    let e = bertopt_passes::mask::HeadMask::from_bytes(found).unwrap_err();
    assert!(e.contains("overflows"), "{e}");

    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693953, 1), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 16]);
    let e = bertopt_passes::mask::HeadMask::from_bytes(&bytes).unwrap_err();
    assert!(e.contains("overflows"), "{e}");
}

#[test]
fn ragged_and_non_boolean_masks_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m.json");
    std::fs::write(&p, "[[true, false], [true]]").unwrap();
    assert!(err_of(&p).contains("layer 1 has 1 heads but layer 0 has 2"), "{}", err_of(&p));
    std::fs::write(&p, "[[true, 0.5]]").unwrap();
    assert!(err_of(&p).contains("expected true/false or 1/0"), "{}", err_of(&p));
    std::fs::write(&p, "[]").unwrap();
    assert!(err_of(&p).contains("empty"), "{}", err_of(&p));
    std::fs::write(&p, "garbage").unwrap();
    assert!(err_of(&p).contains("not a pickle, .npy, JSON or safetensors head mask"), "{}", err_of(&p));
    assert!(err_of(&d.path().join("absent.bin")).contains("cannot read"));
}

/// The writer reproduces numpy 1.x's `pickle.dump` byte for byte: the SMP fixtures were written by Python, and
/// the writer only sees the mask decoded from their JSON twins.
#[test]
fn pickle_writer_is_byte_identical_to_python_pickle() {
    for stem in [
        "head_mask_bert_base_l12_h12_ratio0.5",
        "head_mask_minilm_l6_h12_ratio0.5",
        "head_mask_minilm_l6_h12_ratio0.25",
    ] {
        let json = HeadMask::read(&fixture(&format!("{stem}.json"))).unwrap();
        let python = std::fs::read(fixture(&format!("{stem}.np1.bin"))).unwrap();
        assert_eq!(json.to_pickle(), python, "{stem}");
    }
}

/// Shapes the fixtures do not cover (one head, all true, a layer count past the one-byte memo range) round-trip.
#[test]
fn pickle_writer_round_trips_unusual_shapes() {
    let d = tempfile::tempdir().unwrap();
    let shapes: [Vec<Vec<bool>>; 4] = [
        vec![vec![true]],
        vec![vec![true, true, true]; 2],
        vec![vec![false, true]; 300],
        (0..1500).map(|i| vec![i % 3 == 0, i % 2 == 0]).collect(),
    ];
    for keep in shapes {
        let m = HeadMask { keep };
        let p = d.path().join("m.bin");
        std::fs::write(&p, m.to_pickle()).unwrap();
        assert_eq!(HeadMask::read(&p).unwrap(), m, "{} layers", m.layers());
    }
}
