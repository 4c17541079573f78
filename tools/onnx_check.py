#!/usr/bin/python3
"""tools/onnx_check.py FILE.onnx ... -- onnx.checker.check_model(full_check=True) on each file
(structure, operator schemas of the file's opset, shape inference), with Debian's python3-onnx.
An external check of advnn's ONNX export (tests/onnx_export_check.sh); not used by the library.
Prints one ok/FAIL line per file, then "N passed, N failed"; exit 1 if any failed."""
import sys

try:
    import onnx
except ImportError:
    print("tools/onnx_check.py: python3-onnx is missing (tools/deps.sh test installs it)", file=sys.stderr)
    print("0 passed, 1 failed")
    sys.exit(1)

passed = failed = 0
for path in sys.argv[1:]:
    try:
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        passed += 1
        print(f"ok   check_model {path} (opset {m.opset_import[0].version}, {len(m.graph.node)} nodes)")
    except Exception as e:  # any checker or parser error is a failure of that file
        failed += 1
        print(f"FAIL check_model {path}: {str(e).strip()[:2000]}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
