// attack: the JVM runs without an address-space limit: direct buffers and heap together past the sample's cap
// expect: limit=memory
import java.nio.ByteBuffer;
import java.util.ArrayList;

public class Problem {
    public static void main(String[] args) {
        ArrayList<Object> keep = new ArrayList<>();
        for (int i = 0; i < 64; i++) {
            ByteBuffer direct = ByteBuffer.allocateDirect(32 << 20);
            for (int at = 0; at < direct.capacity(); at += 4096) direct.put(at, (byte) 1);
            keep.add(direct);
            byte[] heap = new byte[32 << 20];
            for (int at = 0; at < heap.length; at += 4096) heap[at] = 1;
            keep.add(heap);
        }
        System.out.println("allocated " + keep.size());
    }
}
