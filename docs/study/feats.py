"""Cache frozen-VGG16 (hed) block statistics for images at a size: per block pool output, mean & std & GeM."""
import sys, glob, time, numpy as np, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL","2")
import tensorflow as tf, keras
sys.path.insert(0,'/work/main')
from cxr.model import build_base
from cxr.layers import CaffeInput
size=int(sys.argv[1]); out=sys.argv[2]; files=[l.strip() for l in open(sys.argv[3])]
base=build_base(size,"hed")
names=["block3_conv3","block4_conv3","block5_conv3"]
taps=keras.Model(base.input,[base.get_layer(n).output for n in names])
inp=keras.Input((size,size,3)); x=CaffeInput()(inp); outs=taps(x)
stats=[]
for o in outs:
    stats += [keras.ops.mean(o,axis=(1,2)), keras.ops.std(o,axis=(1,2)), keras.ops.max(o,axis=(1,2))]
m=keras.Model(inp,stats)
def load(p):
    b=tf.io.read_file(p); im=tf.io.decode_png(b,channels=1)
    im=tf.image.resize(im,(size,size),method="bilinear",antialias=True)
    im=tf.cast(tf.clip_by_value(tf.round(im),0,255),tf.uint8)
    return tf.repeat(tf.cast(im,tf.float32)/255.0,3,axis=-1)
ds=tf.data.Dataset.from_tensor_slices(files).map(load).batch(32)
t=time.time()
res=[[] for _ in stats]; resm=[[] for _ in stats]
for b in ds:
    for views,r in ((b,res),(b[:,:,::-1,:],resm)):
        o=m(views,training=False)
        for i,a in enumerate(o): r[i].append(np.asarray(a))
print("s", time.time()-t, len(files))
np.savez(out, **{f"f{i}":np.concatenate(r) for i,r in enumerate(res)}, **{f"m{i}":np.concatenate(r) for i,r in enumerate(resm)})
