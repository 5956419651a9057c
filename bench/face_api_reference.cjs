// The ORIGINAL face-api.js (@vladmandic/face-api 1.7.15) on the faces bench/face_api_reference.py lists:
// each face goes through the library's own path (extractFaceTensors on the face box, then
// AgeGenderNet.predictAgeAndGender), on tfjs' pure-JS "cpu" backend (no native tfjs-node).
//
//   node bench/face_api_reference.cjs NODE_MODULES JOBS.json OUT.json [BACKEND]
//
// BACKEND: cpu (default; the fixture's: tfjs' pure-JS kernels) or wasm (faster; its resize is float32 C++).
// NODE_MODULES holds @vladmandic/face-api@1.7.15, @tensorflow/tfjs@4.22.0 and
// @tensorflow/tfjs-backend-wasm@4.22.0 (face-api's node-wasm build requires it; the cpu backend runs).
// JOBS.json: {model_dir, faces: [{photo, raw, height, width, box: [x, y, w, h]}], resize: {image, height,
// width, small: [h, w]}, pixels: [[row, col, channel], ...]}; `raw` is the photo's RGB uint8 bytes.
'use strict';

const fs = require('fs');
const path = require('path');

const [nodeModules, jobsFile, outFile, backend = 'cpu'] = process.argv.slice(2);
const load = (name) => require(path.join(path.resolve(nodeModules), name));
const tf = load('@tensorflow/tfjs');
const faceapi = load('@vladmandic/face-api/dist/face-api.node-wasm.js');

function photoTensor(face) {
  const bytes = fs.readFileSync(face.raw);
  return tf.tensor3d(Int32Array.from(bytes), [face.height, face.width, 3], 'int32');
}

async function netInput(faceTensor) {
  // what TinyXception.forwardInput feeds the network before normalising: padToSquare + tfjs resize
  const input = await faceapi.toNetInput(faceTensor);
  return input.toBatchTensor(112, true);
}

async function runFace(face, pixels) {
  const image = photoTensor(face);
  const [x, y, w, h] = face.box;
  const started = process.hrtime.bigint();
  const [crop] = await faceapi.extractFaceTensors(image, [new faceapi.Rect(x, y, w, h)]);
  const result = await faceapi.nets.ageGenderNet.predictAgeAndGender(crop);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const batch = await netInput(crop);
  const values = batch.dataSync();
  const probMale = result.gender === 'male' ? result.genderProbability : 1 - result.genderProbability;
  const record = {
    photo: face.photo, box: face.box, crop_shape: crop.shape, age: result.age, p_female: 1 - probMale,
    input_sum: values.reduce((a, b) => a + b, 0),
    input_pixels: pixels.map(([r, c, ch]) => values[(r * 112 + c) * 3 + ch]),
  };
  tf.dispose([image, crop, batch]);
  return { record, seconds };
}

async function resizeCheck(spec) {
  const image = tf.tensor3d(Int32Array.from(spec.image), [spec.height, spec.width, 3], 'int32');
  const batch = await netInput(image);
  const small = tf.image.resizeBilinear(image.toFloat(), spec.small, false, false);
  const out = { to_batch_tensor_112: Array.from(batch.dataSync()), resize_bilinear_small: Array.from(small.dataSync()) };
  tf.dispose([image, batch, small]);
  return out;
}

async function main() {
  const jobs = JSON.parse(fs.readFileSync(jobsFile, 'utf8'));
  await faceapi.tf.setBackend(backend);  // one engine: face-api's node builds require this same @tensorflow/tfjs
  await faceapi.tf.ready();
  await faceapi.nets.ageGenderNet.loadFromDisk(jobs.model_dir);
  await runFace(jobs.faces[0], jobs.pixels); // warm-up
  const records = [];
  let seconds = 0;
  for (const face of jobs.faces) {
    const run = await runFace(face, jobs.pixels);
    records.push(run.record);
    seconds += run.seconds;
  }
  const output = {
    face_api: faceapi.version, tfjs: tf.version.tfjs, backend: tf.getBackend(),
    faces: records, predict_seconds: seconds, resize: await resizeCheck(jobs.resize),
  };
  fs.writeFileSync(outFile, JSON.stringify(output));
}

main().catch((error) => { console.error(error); process.exit(1); });
