// HSE FaceRes as the Human library ships it (@vladmandic/human 3.3.6, models/faceres.json + faceres.bin),
// run by tfjs itself (the pure-JS "cpu" backend) on input tensors saved by faceres_reference.py: the
// JS original of the graph the project runs in TensorFlow (stages/lib/backbones/tfjs_graph.py).
//
//   node bench/fidelity/faceres_reference.cjs NODE_MODULES MODEL_DIR INPUTS.f32 COUNT OUT.json
//
// NODE_MODULES holds @tensorflow/tfjs@4.22.0; MODEL_DIR holds faceres.json and faceres.bin; INPUTS.f32
// is COUNT x 224 x 224 x 3 little-endian float32 (the authors' feeding, made in Python).
'use strict';

const fs = require('fs');
const path = require('path');

const [nodeModules, modelDir, inputsFile, count, outFile] = process.argv.slice(2);
const tf = require(path.join(path.resolve(nodeModules), '@tensorflow/tfjs'));

async function main() {
  await tf.setBackend('cpu');
  const model = JSON.parse(fs.readFileSync(path.join(modelDir, 'faceres.json')));
  const weights = fs.readFileSync(path.join(modelDir, 'faceres.bin'));
  const handler = tf.io.fromMemory({
    modelTopology: model.modelTopology, format: model.format, generatedBy: model.generatedBy,
    convertedBy: model.convertedBy, signature: model.signature,
    weightSpecs: model.weightsManifest.flatMap((group) => group.weights),
    weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.length),
  });
  const graph = await tf.loadGraphModel(handler);
  const bytes = fs.readFileSync(inputsFile);
  const values = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const size = 224 * 224 * 3;
  const faces = [];
  for (let i = 0; i < Number(count); i += 1) {
    const input = tf.tensor4d(values.slice(i * size, (i + 1) * size), [1, 224, 224, 3]);
    const [age, gender, embedding] = graph.execute(input, ['age_pred/Softmax', 'gender_pred/Sigmoid', 'global_pooling/Mean']);
    const emb = embedding.dataSync();
    faces.push({
      age_probs: Array.from(age.dataSync()), p_male: gender.dataSync()[0],
      embedding_head: Array.from(emb.slice(0, 16)), embedding_sum: emb.reduce((a, b) => a + b, 0),
    });
    tf.dispose([input, age, gender, embedding]);
  }
  fs.writeFileSync(outFile, JSON.stringify({ tfjs: tf.version.tfjs, backend: tf.getBackend(), faces }));
}

main().catch((error) => { console.error(error); process.exit(1); });
