import articles from './articles.ts'
import comments from './comments.ts'
import type { ResourceDescriptor } from './resource.ts'
import users from './users.ts'

export type { ResourceDescriptor } from './resource.ts'

/** The resources the service serves, in the order its documents list them. */
export const defaultResources = [users, articles, comments] as const satisfies readonly ResourceDescriptor[]

/** The name of one of the service's own resources. */
export type DefaultResourceName = (typeof defaultResources)[number]['name']

/** The names of `resources`, in order. */
export function resourceNames(resources: readonly ResourceDescriptor[]): string[] {
  return resources.map((resource) => resource.name)
}

/** The resource named `name`, or undefined. */
export function findResource(resources: readonly ResourceDescriptor[], name: string): ResourceDescriptor | undefined {
  return resources.find((resource) => resource.name === name)
}

/** The resource named `name` of a job (the API accepted the name, so it is known). */
export function resourceOf(resources: readonly ResourceDescriptor[], name: string): ResourceDescriptor {
  const resource = findResource(resources, name)
  if (!resource) throw new Error(`no resource is named ${name}`)
  return resource
}

/** Checks a list: names are unique. */
export function checkResources(resources: readonly ResourceDescriptor[]): readonly ResourceDescriptor[] {
  const names = resourceNames(resources)
  const repeated = names.find((name, index) => names.indexOf(name) !== index)
  if (repeated) throw new Error(`two resources are named ${repeated}`)
  return resources
}

/**
 * The descriptors of `modules` (each a descriptor's `module`), as another thread loads them:
 * descriptors hold functions, so threads pass their modules' URLs instead.
 */
export async function loadResources(modules: readonly string[]): Promise<ResourceDescriptor[]> {
  return Promise.all(
    modules.map(async (module) => ((await import(module)) as { default: ResourceDescriptor }).default),
  )
}
