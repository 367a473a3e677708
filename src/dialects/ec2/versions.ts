/**
 * The EC2 metadata API versions. Every version (and `latest`) serves the same tree here: clients
 * such as cloud-init probe a dated version (`2009-04-04`, `2021-03-23`) and then read from it.
 */

/** In the order EC2 lists them at `/`. */
export const VERSIONS: readonly string[] = [
  '1.0',
  '2007-01-19',
  '2007-03-01',
  '2007-08-29',
  '2007-10-10',
  '2007-12-15',
  '2008-02-01',
  '2008-09-01',
  '2009-04-04',
  '2011-01-01',
  '2011-05-01',
  '2012-01-12',
  '2014-02-25',
  '2014-11-05',
  '2015-10-20',
  '2016-04-19',
  '2016-06-30',
  '2016-09-02',
  '2018-03-28',
  '2018-08-17',
  '2018-09-24',
  '2019-10-01',
  '2020-10-27',
  '2021-01-03',
  '2021-03-23',
  'latest',
];

const VERSION_SET: ReadonlySet<string> = new Set(VERSIONS);

/** True when `segment` names a version (a dated one, `1.0`, or `latest`). */
export function isVersion(segment: string): boolean {
  return VERSION_SET.has(segment);
}
