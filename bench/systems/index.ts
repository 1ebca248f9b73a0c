/** The systems `npm run bench` knows, by name. */
import { ensemble } from './ensemble.ts';
import { etcd } from './etcd.ts';
import { natskv } from './natskv.ts';
import type { SystemModule, SystemName } from './types.ts';
import { zookeeperSystem } from './zookeeper.ts';

export const systems: Readonly<Record<SystemName, SystemModule>> = {
  ensemble,
  etcd,
  natskv,
  zookeeper: zookeeperSystem,
};
