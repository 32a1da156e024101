// attack: V8 runs without an address-space limit: grow node Buffers (outside the JS heap) to 6 GiB
// expect: limit=memory
const chunks = [];
for (let i = 0; i < 96; i++) {
  chunks.push(Buffer.alloc(64 * 1024 * 1024, 1));
}
console.log("allocated", chunks.length);
