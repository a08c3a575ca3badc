# fixture=vm1 virsh-options=-q
snapshot-current vm1 --name
