#!/usr/bin/env node
// tests/onnx_run.js -- run ONNX models in ONNX Runtime (onnxruntime-node, CPU, one intra-op thread)
// on float32 .npy inputs; the external check of advnn's ONNX export (tests/onnx_export_check.sh).
//
//   node tests/onnx_run.js JOBS          JOBS: lines "MODEL OUTDIR name=in.npy ...": every output of
//                                        MODEL is written to OUTDIR/<output name>.npy
//   node tests/onnx_run.js --bench REPS MODEL name=in.npy ...
//                                        prints "ort_median_us M ort_min_us B": median and best µs
//                                        of session.run over REPS runs
//   node tests/onnx_run.js --smoke MODEL ...
//                                        runs each model on 3 samples of random inputs shaped by its
//                                        input metadata; fails unless every output is finite
// onnxruntime-node is looked up in $ADVNN_ORT_DIR, then build/npm/node_modules (where tools/deps.sh
// test installs it), then node's usual paths. Exit 3 when it is missing, 1 on any other error.
'use strict';
const fs = require('fs');
const path = require('path');

function loadOrt() {
  const dirs = [process.env.ADVNN_ORT_DIR, path.join(__dirname, '..', 'build', 'npm', 'node_modules')];
  for (const d of dirs) {
    if (!d) continue;
    try { return require(path.join(d, 'onnxruntime-node')); } catch (e) { /* next */ }
  }
  try { return require('onnxruntime-node'); } catch (e) { /* below */ }
  console.error('onnx_run.js: onnxruntime-node is not installed (tools/deps.sh test installs it into build/npm)');
  process.exit(3);
}

function readNpy(file) {
  const b = fs.readFileSync(file);
  if (b.length < 10 || b[0] !== 0x93 || b.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${file}: not a .npy file`);
  const v = b[6], hl = v === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8), h0 = v === 1 ? 10 : 12;
  const hdr = b.toString('latin1', h0, h0 + hl);
  if (!/'descr':\s*'<f4'/.test(hdr) || /'fortran_order':\s*True/.test(hdr)) throw new Error(`${file}: want C-order '<f4', header ${hdr}`);
  const m = /'shape':\s*\(([^)]*)\)/.exec(hdr);
  const dims = m[1].split(',').map(s => s.trim()).filter(s => s.length).map(Number);
  const n = dims.reduce((a, c) => a * c, 1), off = h0 + hl;
  if (b.length - off < 4 * n) throw new Error(`${file}: truncated`);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = b.readFloatLE(off + 4 * i);
  return { dims, data };
}

function writeNpy(file, dims, data) {
  let hdr = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims.join(', ')}${dims.length === 1 ? ',' : ''}), }`;
  while ((10 + hdr.length + 1) % 64 !== 0) hdr += ' ';
  hdr += '\n';
  const b = Buffer.alloc(10 + hdr.length + 4 * data.length);
  b[0] = 0x93; b.write('NUMPY', 1, 'latin1'); b[6] = 1; b[7] = 0;
  b.writeUInt16LE(hdr.length, 8); b.write(hdr, 10, 'latin1');
  for (let i = 0; i < data.length; i++) b.writeFloatLE(data[i], 10 + hdr.length + 4 * i);
  fs.writeFileSync(file, b);
}

async function session(ort, model) {
  return ort.InferenceSession.create(model, {
    intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
  });
}

function feeds(ort, args) {
  const f = {};
  for (const a of args) {
    const k = a.indexOf('=');
    if (k < 1) throw new Error(`bad input argument '${a}' (want name=file.npy)`);
    const t = readNpy(a.slice(k + 1));
    f[a.slice(0, k)] = new ort.Tensor('float32', t.data, t.dims);
  }
  return f;
}

async function main() {
  const argv = process.argv.slice(2);
  const ort = loadOrt();
  if (argv[0] === '--bench') {
    const reps = Number(argv[1]), s = await session(ort, argv[2]), f = feeds(ort, argv.slice(3));
    for (let i = 0; i < Math.min(20, reps); i++) await s.run(f);   // warm-up
    const t = [];
    for (let i = 0; i < reps; i++) {
      const t0 = process.hrtime.bigint();
      await s.run(f);
      t.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    t.sort((a, b) => a - b);
    console.log(`ort_median_us ${t[Math.floor(t.length / 2)].toFixed(2)} ort_min_us ${t[0].toFixed(2)}`);
    return;
  }
  if (argv[0] === '--smoke') {
    let bad = 0;
    for (const model of argv.slice(1)) {
      const s = await session(ort, model), f = {};
      for (const m of s.inputMetadata) {
        const dims = m.shape.map(d => (typeof d === 'number' ? d : 3));
        const data = new Float32Array(dims.reduce((a, c) => a * c, 1));
        for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37);
        f[m.name] = new ort.Tensor('float32', data, dims);
      }
      const r = await s.run(f);
      const finite = s.outputNames.every(n => r[n].data.every(Number.isFinite));
      console.log(`${finite ? 'ok  ' : 'FAIL'} ${model}: inputs ${s.inputNames.join(', ')} -> outputs ${s.outputNames.join(', ')}${finite ? '' : ' (not finite)'}`);
      if (!finite) bad++;
    }
    if (bad) process.exit(1);
    return;
  }
  if (argv.length !== 1) throw new Error('usage: onnx_run.js JOBS | --bench REPS MODEL name=in.npy ...');
  const lines = fs.readFileSync(argv[0], 'utf8').split('\n').filter(l => l.trim().length);
  let failed = 0;
  for (const line of lines) {
    const w = line.trim().split(/\s+/);
    try {
      const s = await session(ort, w[0]);
      const r = await s.run(feeds(ort, w.slice(2)));
      fs.mkdirSync(w[1], { recursive: true });
      for (const name of s.outputNames) writeNpy(path.join(w[1], `${name}.npy`), r[name].dims, r[name].data);
    } catch (e) {
      failed++;
      console.error(`onnx_run.js: ${w[0]}: ${e.message || e}`);
    }
  }
  if (failed) process.exit(1);
}

main().catch(e => { console.error(`onnx_run.js: ${e.message || e}`); process.exit(1); });
