import pkg from '../../package.json';

/** dronelake's version, as package.json has it. */
export const PACKAGE_VERSION: string = pkg.version;
