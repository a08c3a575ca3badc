# fixture=test
snapshot-create-as test s1 --print-xml --memspec file=/var/lib/qsnap/s1.mem,snapshot=external --diskspec vda,snapshot=external,file=/var/lib/qsnap/vda.s1.qcow2
