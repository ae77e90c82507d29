import subprocess,sys
def tree(args):
    out=subprocess.run(["cargo","tree","-f","{p} [{f}]","--prefix","none"]+args,capture_output=True,text=True,cwd="/work/main").stdout
    d={}
    for l in out.splitlines():
        l=l.strip()
        if not l or '[' not in l: continue
        name=l.split(' [')[0].split(' (')[0]
        feats=frozenset(x for x in l[l.find('[')+1:l.rfind(']')].split(',') if x)
        d.setdefault(name,set()).add(feats)
    return d
a=tree(["-p","spook-python","-e","normal,build"])
b=tree(["-e","normal,build,dev","--features","spook-ros/ros2"])
for k in sorted(a):
    if k not in b: print("ONLY-PY",k); continue
    for fs in a[k]:
        if fs not in b[k]:
            sup=[x for x in b[k] if fs<=x]
            print(k, "py:", sorted(fs), "-> ws:", [sorted(x) for x in b[k]])
