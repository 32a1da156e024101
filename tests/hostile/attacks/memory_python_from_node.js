// attack: start a python3 child from node that allocates 5 GiB (another runtime, the same sample)
// expect: limit=memory
const { execFileSync } = require("child_process");
try {
  execFileSync("python3", ["-c", "b = bytearray(5 << 30); b[::4096] = b'x' * len(b[::4096])"], { stdio: "inherit" });
} catch (e) {
  process.exit(1);
}
