/**
 * Which dialect answers a path. Adding a cloud is one entry here plus its folder under
 * dialects/; the first entry whose `matches` says yes answers.
 */
import { azure, azureRefusal, isAzurePath } from '../dialects/azure/index.js';
import { ec2, ec2CrawlRoot, ec2Targets, isEc2Path } from '../dialects/ec2/index.js';
import { gce, gceRefusal, isGcePath } from '../dialects/gce/index.js';
import { isOpenStackPath, openstack, openstackCrawlRoot, openstackError, openstackTargets } from '../dialects/openstack/index.js';
import type { DialectContext, DialectRequest, DialectResponse } from '../dialects/types.js';
import type { DialectName } from '../model/instance.js';

export interface DialectEntry {
  /** Also the key of its per-instance rate limit (limits.rate_per_s). */
  readonly name: DialectName;
  matches(path: string): boolean;
  handle(req: DialectRequest, ctx: DialectContext): DialectResponse;
  /** The dialect's own answer when the pipeline refuses: 429 rate limited, 503 too many held. */
  refuse?(status: 429 | 503): DialectResponse;
  /** The tree a client that asked for `path` will likely crawl next (pre-rendered once per connection mark and root). */
  crawlRoot?(path: string): string | undefined;
  /** The targets of that crawl, at most `max` (asked only when the root is not pre-rendered yet). */
  targets?(root: string, ctx: DialectContext, max: number): string[];
  /**
   * Paths whose trees are pre-rendered when an instance is registered at run time (the guest is
   * about to boot): what the common clients crawl first.
   */
  readonly prewarm?: readonly string[];
}

export const DIALECTS: readonly DialectEntry[] = [
  // SDKs read /latest/, cloud-init the newest dated version it knows (2021-03-23 in 22.x–24.x).
  {
    name: 'ec2',
    matches: isEc2Path,
    handle: ec2,
    crawlRoot: ec2CrawlRoot,
    targets: ec2Targets,
    prewarm: ['/latest/meta-data/', '/2021-03-23/meta-data/'],
  },
  { name: 'gce', matches: isGcePath, handle: gce, refuse: gceRefusal },
  {
    name: 'openstack',
    matches: isOpenStackPath,
    handle: openstack,
    refuse: (s) => openstackError(s),
    crawlRoot: openstackCrawlRoot,
    targets: openstackTargets,
  },
  { name: 'azure', matches: isAzurePath, handle: azure, refuse: azureRefusal },
];

export function dialectFor(path: string): DialectEntry | undefined {
  return DIALECTS.find((d) => d.matches(path));
}
